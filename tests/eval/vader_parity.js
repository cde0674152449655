// The reference side of tests/eval/vader.cpp: scores texts with the npm package vader-sentiment@1.1.3.
//
//   node vader_parity.js <npm prefix> <extra.json> <out.json>
//
// <npm prefix>: where scripts/fetch_npm_data.sh installed vader-sentiment and sentiment (third_party/npm).
// <extra.json>: an array of texts as hex strings of their UTF-8 bytes (so that malformed UTF-8 can be sent;
//               TextDecoder turns it into U+FFFD the way the C++ port is meant to).
// <out.json>:   { "fixtures": [{"source", "index", "text", "class", "compound", "neg", "neu", "pos"}, ...],
//                 "extra": [{"compound", "neg", "neu", "pos"}, ...],
//                 "space": [code points matching /\s/],
//                 "lower_latin1": [[code point, its toLowerCase() code point], ...] for every character
//                                 whose lower case is another character in U+0000-U+00FF }
// The package rounds its scores with toFixed (compound to 4 decimals, the others to 3). To get the values it
// rounds, toFixed is replaced while scoring; each text is scored both ways and the unrounded scores must
// round to the package's own output, else this exits with an error.
'use strict';
const fs = require('fs');
const path = require('path');

const [prefix, extraFile, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error('usage: node vader_parity.js <npm prefix> <extra.json> <out.json>');
  process.exit(2);
}
const modules = path.resolve(prefix, 'node_modules');
const analyzer = require(path.join(modules, 'vader-sentiment')).SentimentIntensityAnalyzer;
const version = JSON.parse(fs.readFileSync(path.join(modules, 'vader-sentiment', 'package.json'), 'utf8')).version;
if (version !== '1.1.3') throw new Error(`vader-sentiment is ${version}, expected 1.1.3`);

const toFixed = Number.prototype.toFixed;
const digits = {compound: 4, neg: 3, neu: 3, pos: 3};

function score(text) {
  const rounded = analyzer.polarity_scores(text);
  let raw;
  Number.prototype.toFixed = function () {
    return String(Number(this));  // shortest round-trip form: parseFloat gives the same double back
  };
  try {
    raw = analyzer.polarity_scores(text);
  } finally {
    Number.prototype.toFixed = toFixed;
  }
  for (const key of Object.keys(digits)) {
    if (parseFloat(toFixed.call(raw[key], digits[key])) !== rounded[key])
      throw new Error(`unrounded ${key} ${raw[key]} does not round to ${rounded[key]} for ${JSON.stringify(text)}`);
  }
  return {compound: raw.compound, neg: raw.neg, neu: raw.neu, pos: raw.pos};
}

const fixtures = [];
for (const source of ['imdb', 'amazon', 'yelp']) {
  const file = path.join(modules, 'sentiment', 'test', 'fixtures', `${source}.json`);
  JSON.parse(fs.readFileSync(file, 'utf8')).forEach((record, index) => {
    if (typeof record.text !== 'string') throw new Error(`${file}[${index}] has no text`);
    fixtures.push({source, index, text: record.text, class: record.class, ...score(record.text)});
  });
}

const decoder = new TextDecoder('utf-8', {ignoreBOM: true});  // malformed bytes -> U+FFFD; a BOM is kept
const extra = JSON.parse(fs.readFileSync(extraFile, 'utf8')).map(hex => score(decoder.decode(Buffer.from(hex, 'hex'))));

const space = [];
const lowerLatin1 = [];
for (let cp = 0; cp <= 0x10ffff; cp++) {
  if (cp >= 0xd800 && cp <= 0xdfff) continue;
  const c = String.fromCodePoint(cp);
  if (/\s/.test(c)) space.push(cp);
  const lower = c.toLowerCase();
  if (lower !== c && lower.length === 1 && lower.charCodeAt(0) <= 0xff) lowerLatin1.push([cp, lower.charCodeAt(0)]);
  else if (lower !== c && [...lower].every(ch => ch.codePointAt(0) <= 0xff))
    throw new Error(`U+${cp.toString(16)} lower-cases to several Latin-1 characters; the port assumes none does`);
}

fs.writeFileSync(outFile, JSON.stringify({fixtures, extra, space, lower_latin1: lowerLatin1}));
