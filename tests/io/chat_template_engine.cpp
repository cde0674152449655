// The Jinja subset of rlhf/io/chat_template/ construct by construct (the renders expected are Python Jinja2's,
// as transformers configures it), its refusals with line and column, and JinjaChatTemplate: special tokens as
// strings or AddedToken objects, named templates, and the assistant spans.
#include <doctest/doctest.h>

#include <ctime>
#include <string>

#include "rlhf/io/chat_template/apply_chat_template.hpp"

using rlhf::io::ChatTemplateOptions;
using rlhf::io::JinjaChatTemplate;
using rlhf::io::jinja::Template;
using rlhf::io::jinja::Value;
using json = nlohmann::ordered_json;

namespace {

std::string render(const std::string& source, const json& vars = json::object()) {
  std::vector<std::pair<std::string, Value>> v;
  for (auto it = vars.begin(); it != vars.end(); ++it) v.emplace_back(it.key(), rlhf::io::jinja::from_json(it.value()));
  return Template(source).render(v).text;
}

const json chat = json::parse(R"({"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "U1"},
  {"role": "assistant", "content": "A1"}, {"role": "user", "content": "U2"}]})");

}  // namespace

TEST_CASE("text, output and comments") {
  CHECK(render("plain") == "plain");
  CHECK(render("a{{ 'b' }}c{# gone #}d") == "abcd");
  CHECK(render("{{ 1 }}{{ 1.5 }}{{ none }}{{ true }}{{ [1, 'a'] }}{{ {'k': 'v'} }}") == "11.5NoneTrue[1, 'a']{'k': 'v'}");
  CHECK(render("{{ x }}|{{ x.y is defined }}", {{"x", json::object()}}) == "{}|False");
  CHECK(render("{{ missing }}.") == ".");
  CHECK(render("{ not a tag }") == "{ not a tag }");
  CHECK(render("one trailing newline is dropped\n") == "one trailing newline is dropped");
}

TEST_CASE("white space control: trim_blocks, lstrip_blocks and dashes") {
  CHECK(render("{% if true %}\nx\n{% endif %}\ny") == "x\ny");
  CHECK(render("  {% if true %}x{% endif %}") == "x");
  CHECK(render("a  {% if true %}x{% endif %}") == "a  x");  // not at the start of a line
  CHECK(render("a \n {%- if true -%} \n x {%- endif %}") == "ax");
  CHECK(render("a {{- 'b' -}} c") == "abc");
  CHECK(render("{{ 'x' }}\ny") == "x\ny");  // trim_blocks is for blocks, not {{ }}
  CHECK(render("  {%+ if true %}x{% endif %}") == "  x");
}

TEST_CASE("if / elif / else and inline if") {
  const std::string t = "{% if n == 1 %}one{% elif n == 2 %}two{% else %}many{% endif %}";
  CHECK(render(t, {{"n", 1}}) == "one");
  CHECK(render(t, {{"n", 2}}) == "two");
  CHECK(render(t, {{"n", 7}}) == "many");
  CHECK(render("{{ 'y' if n else 'n' }}{{ 'z' if false }}.", {{"n", 0}}) == "n.");
}

TEST_CASE("for loops: loop.*, filters, else, unpacking, break and continue") {
  CHECK(render("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.revindex }}{{ loop.revindex0 }}"
               "{{ loop.length }}{{ loop.first|int }}{{ loop.last|int }} {% endfor %}", chat) ==
        "1043410 2132400 3221400 4310401 ");
  CHECK(render("{% for m in messages if m.role == 'user' %}{{ loop.index }}{{ m.content }}{% endfor %}", chat) == "1U12U2");
  CHECK(render("{% for x in [] %}x{% else %}empty{% endfor %}") == "empty");
  CHECK(render("{% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}") == "a1b2");
  CHECK(render("{% for c in 'hé' %}[{{ c }}]{% endfor %}") == "[h][é]");
  CHECK(render("{% for i in range(5) %}{% if i == 1 %}{% continue %}{% endif %}{% if i == 3 %}{% break %}{% endif %}"
               "{{ i }}{% endfor %}") == "02");
  CHECK(render("{% for i in range(3) %}{{ loop.previtem|default('-') }}{{ loop.nextitem|default('-') }}"
               "{{ loop.cycle('a', 'b') }} {% endfor %}") == "-1a 02b 1-a ");
}

TEST_CASE("set, block set, namespace and scoping") {
  CHECK(render("{% set x = 1 %}{% for i in [1, 2] %}{% set x = x + i %}{% endfor %}{{ x }}") == "1");
  CHECK(render("{% set ns = namespace(x=1) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}") == "4");
  CHECK(render("{% if true %}{% set y = 'if shares its scope' %}{% endif %}{{ y }}") == "if shares its scope");
  CHECK(render("{% set b %}<{{ 1 + 1 }}>{% endset %}{{ b }}{{ b|length }}") == "<2>3");
  CHECK_THROWS_WITH(render("{% set x = 1 %}{% set x.a = 2 %}"), doctest::Contains("not a namespace()"));
}

TEST_CASE("macros") {
  CHECK(render("{% macro m(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ m(1) }}{{ m(1, 2) }}{{ m(b=3, a=4) }}") == "1B1243");
  CHECK_THROWS_WITH(render("{% macro m(a) %}{{ m(a) }}{% endmacro %}{{ m(1) }}"), doctest::Contains("too deeply"));
}

TEST_CASE("operators") {
  CHECK(render("{{ 1 + 2 * 3 }} {{ (1 + 2) * 3 }} {{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 2 ** 3 ** 2 }} {{ 3 / 2 }}") ==
        "7 9 3 -4 2 64 1.5");
  CHECK(render("{{ 'a' + 'b' }} {{ 'a' ~ 1 ~ none }} {{ 'ab' * 2 }} {{ [1] + [2] }}") == "ab a1None abab [1, 2]");
  CHECK(render("{{ 1 < 2 < 3 }} {{ 3 > 2 > 2 }} {{ 'b' in 'abc' }} {{ 2 not in [1] }} {{ 'k' in {'k': 1} }}") ==
        "True False True True True");
  CHECK(render("{{ 0 or 'x' }} {{ 1 and 'y' }} {{ not 0 }} {{ -3|abs }} {{ 1 == 1.0 }} {{ true == 1 }}") ==
        "x y True 3 True True");
  CHECK(render("{{ 0.1 + 0.2 }} {{ 1 if false else 2.0 }} {{ 10 / 4 }} {{ 1.0 }}") == "0.30000000000000004 2.0 2.5 1.0");
  CHECK_THROWS_WITH(render("{{ 'a' + 1 }}"), doctest::Contains("unsupported operand types for +: 'str' and 'int'"));
  CHECK_THROWS_WITH(render("{{ 1 // 0 }}"), doctest::Contains("by zero"));
  CHECK_THROWS_WITH(render("{{ 'a' < 1 }}"), doctest::Contains("unsupported operand"));
  CHECK_THROWS_WITH(render("{{ nothing + 'a' }}"), doctest::Contains("'nothing' is undefined"));
}

TEST_CASE("subscripts, slices and attributes") {
  CHECK(render("{{ messages[0].role }} {{ messages[-1]['content'] }} {{ messages[1:3]|length }} {{ messages[::-1][0].content }}",
               chat) == "system U2 2 U2");
  CHECK(render("{{ 'héllo'[1] }} {{ 'héllo'[1:3] }} {{ 'abc'[::-1] }} {{ [1, 2, 3][5] is defined }}") == "é él cba False");
  CHECK_THROWS_WITH(render("{{ nothing.role }}"), doctest::Contains("'nothing' is undefined"));
}

TEST_CASE("filters") {
  CHECK(render("{{ '  x  '|trim }}|{{ 'xax'|trim('x') }}|{{ 'Ab'|lower }}{{ 'Ab'|upper }}|{{ 'a b'|title }}|{{ 'aB'|capitalize }}") ==
        "x|a|abAB|A B|Ab");
  CHECK(render("{{ 'aaa'|replace('a', 'b') }}{{ 'aaa'|replace('a', 'b', 2) }}|{{ [1, 2]|join(', ') }}|{{ [1, 2]|join }}") ==
        "bbbbba|1, 2|12");
  CHECK(render("{{ missing|default('d') }}{{ ''|default('e') }}{{ ''|d('f', true) }}{{ none|default('g') }}") == "dfNone");
  CHECK(render("{{ [3, 4]|first }}{{ [3, 4]|last }}{{ 'xyz'|first }}{{ [3, 4]|length }}{{ 'hé'|length }}{{ {'a': 1}|count }}") ==
        "34x221");
  CHECK(render("{{ '5'|int + 1 }} {{ 'x'|int(7) }} {{ 2.9|int }} {{ '2.5'|float }} {{ 3|string ~ 'x' }} {{ [1, 2]|reverse|list }}") ==
        "6 7 2 2.5 3x [2, 1]");
  CHECK(render("{% for k, v in {'b': 1, 'a': 2}|items %}{{ k }}{{ v }}{% endfor %}") == "b1a2");
  CHECK(render("{{ messages|selectattr('role', 'equalto', 'user')|map(attribute='content')|join(',') }}", chat) == "U1,U2");
  CHECK(render("{{ messages|rejectattr('role', 'in', ['user', 'system'])|list|length }}", chat) == "1");
  CHECK(render("{{ [0, 1, 2]|select('odd')|list }} {{ [0, 1, 2]|reject|list }} {{ ['a', 'b']|map('upper')|join }}") ==
        "[1] [0] AB");
  CHECK(render("{{ 'a\nb'|indent(2) }}|{{ 'a\nb'|indent(2, true) }}") == "a\n  b|  a\n  b");
  CHECK(render("{{ [1, 2, 3]|sum }}") == "6");
  // Python reads "1_000" as 1000 and int(1e30) as a big integer: refused here rather than rendered differently
  CHECK_THROWS_WITH(render("{{ '1_000'|int }}"), doctest::Contains("not supported"));
  CHECK_THROWS_WITH(render("{{ (10.0 ** 30)|int }}"), doctest::Contains("exceeds 64 bits"));
}

TEST_CASE("tojson is json.dumps(ensure_ascii=False)") {
  CHECK(render("{{ {'a': [1, 2.5, none, true], 'b': 'é\"\\\\\n\t\x01'}|tojson }}") ==
        "{\"a\": [1, 2.5, null, true], \"b\": \"é\\\"\\\\\\n\\t\\u0001\"}");
  CHECK(render("{{ {'a': [1], 'b': {}}|tojson(indent=2) }}") == "{\n  \"a\": [\n    1\n  ],\n  \"b\": {}\n}");
  CHECK(render("{{ {'b': 1, 'a': 2}|tojson(sort_keys=true, separators=(',', ':')) }}") == "{\"a\":2,\"b\":1}");
  CHECK(render("{{ 'é'|tojson(ensure_ascii=true) }}") == "\"\\u00e9\"");
  CHECK_THROWS_WITH(render("{{ missing|tojson }}"), doctest::Contains("'missing' is undefined"));
}

TEST_CASE("tests") {
  CHECK(render("{{ x is defined }}{{ y is defined }}{{ y is undefined }}{{ none is none }}{{ 'a' is string }}{{ 1 is string }}",
               {{"x", 1}}) == "TrueFalseTrueTrueTrueFalse");
  CHECK(render("{{ {} is mapping }}{{ [] is mapping }}{{ [] is iterable }}{{ 'a' is iterable }}{{ 1 is iterable }}") ==
        "TrueFalseTrueTrueFalse");
  CHECK(render("{{ 1 is number }}{{ 1 is integer }}{{ 1.0 is float }}{{ true is boolean }}{{ false is false }}") ==
        "TrueTrueTrueTrueTrue");
  CHECK(render("{{ 3 is odd }}{{ 3 is even }}{{ 9 is divisibleby 3 }}{{ 2 is eq 2 }}{{ 'x' is not none }}{{ 1 is in [1] }}") ==
        "TrueFalseTrueTrueTrueTrue");
}

TEST_CASE("Python string and dict methods") {
  CHECK(render("{{ 'abc'.startswith('ab') }}{{ 'abc'.endswith(('x', 'c')) }}{{ 'a,b'.split(',') }}{{ ' a  b '.split() }}") ==
        "TrueTrue['a', 'b']['a', 'b']");
  CHECK(render("{{ 'a b c'.split(' ', 1) }}{{ 'a b c'.rsplit(' ', 1) }}{{ 'x</think>y</think>z'.split('</think>')[-1] }}") ==
        "['a', 'b c']['a b', 'c']z");
  CHECK(render("[{{ '\n\nx\n '.strip('\n') }}][{{ '\n x'.lstrip('\n') }}][{{ 'x \n'.rstrip() }}][{{ ' x '.strip() }}]") ==
        "[x\n ][ x][x][x]");
  CHECK(render("{{ 'Ab'.upper() }}{{ 'Ab'.lower() }}{{ 'aXa'.replace('a', '') }}{{ 'abcb'.find('b') }}{{ 'abcb'.count('b') }}") ==
        "ABabX12");
  CHECK(render("{{ '-'.join(['a', 'b']) }} {{ 'a\nb'.splitlines() }}") == "a-b ['a', 'b']");
  CHECK(render("{{ d.get('a') }}{{ d.get('z', 'no') }}{{ d.get('z') }}{{ d.keys()|list }}{{ d.values()|list }}{{ d['a'] }}",
               {{"d", {{"a", 1}}}}) == "1noNone['a'][1]1");
  CHECK_THROWS_WITH(render("{{ 'a'.format(1) }}"), doctest::Contains("str.format"));
  CHECK_THROWS_WITH(render("{{ 'É'.lower() }}"), doctest::Contains("non-ASCII"));
}

TEST_CASE("raise_exception and strftime_now") {
  CHECK_THROWS_WITH_AS(render("{{ raise_exception('roles must alternate') }}"), doctest::Contains("roles must alternate"),
                       rlhf::io::jinja::render_error);
  const std::time_t now = std::time(nullptr);
  std::tm local{};
  localtime_r(&now, &local);
  CHECK(render("{{ strftime_now('%Y') }}") == std::to_string(1900 + local.tm_year));
}

TEST_CASE("anything outside the subset is a syntax error naming line and column") {
  const auto error_of = [](const std::string& source) -> std::string {
    try {
      Template t(source);
    } catch (const rlhf::io::jinja::syntax_error& e) {
      return e.what();
    }
    return "parsed";
  };
  CHECK(error_of("a\n  {% include 'x' %}") == "chat template: line 2, column 6: the statement 'include' is not "
                                                 "supported (docs/io/chat_templates.md lists what is)");
  CHECK(error_of("{{ x | nosuchfilter }}") == "chat template: line 1, column 6: no filter named 'nosuchfilter' "
                                               "(docs/io/chat_templates.md lists the supported ones)");
  CHECK(error_of("\n\n{{ x is nosuchtest }}").starts_with("chat template: line 3, column 6: no test named 'nosuchtest'"));
  CHECK(error_of("{% if x %}never closed") == "chat template: line 1, column 23: the template ends before {% elif %}");
  CHECK(error_of("{% for x in y %}{% endif %}").starts_with("chat template: line 1, column 20: {% endif %} without"));
  CHECK(error_of("{{ 'open") == "chat template: line 1, column 4: the string opened here is not closed");
  CHECK(error_of("{{ x ") == "chat template: line 1, column 1: the tag opened here is not closed");
  CHECK(error_of("{{ x ; }}") == "chat template: line 1, column 6: unexpected character ';'");
  CHECK(error_of("{{ (1 + }}") == "chat template: line 1, column 9: expected a value, found '}}'");
  CHECK(error_of("{# open") == "chat template: line 1, column 1: the comment opened here is not closed");
  CHECK(error_of("{% set a, b = 1, 2 %}").starts_with("chat template: line 1, column 9: assigning to several names"));
  CHECK(error_of("{% for x in y recursive %}{% endfor %}").starts_with("chat template: line 1, column 15: recursive"));
  CHECK(error_of("{{ 1e5 }}").starts_with("chat template: line 1, column 5: numbers with exponents"));
  CHECK(error_of("{{ " + std::string(300, '(') + " }}").find("nests deeper than 200 levels") != std::string::npos);
}

TEST_CASE("errors while rendering name the line and column") {
  CHECK_THROWS_WITH(render("ok\n{{ 1 + 'a' }}"), doctest::Contains("(line 2, column 6)"));
}

TEST_CASE("JinjaChatTemplate: the config's special tokens, named templates, refusals") {
  const json config = json::parse(R"({"chat_template": "{{ bos_token }}|{{ eos_token }}|{{ pad_token is defined }}",
    "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": false}, "eos_token": "</s>", "pad_token": null})");
  const auto chat = JinjaChatTemplate::from_tokenizer_config(config, "config");
  CHECK(chat.render(json::array()) == "<s>|</s>|False");
  CHECK(chat.special_token("eos_token") == "</s>");

  const json named = json::parse(R"({"chat_template": [{"name": "default", "template": "plain"},
    {"name": "tool_use", "template": "tools: {{ tools|length }}"}]})");
  CHECK(JinjaChatTemplate::from_tokenizer_config(named, "named").render(json::array()) == "plain");
  CHECK(JinjaChatTemplate::from_tokenizer_config(named, "named", true).render(json::array(), {.tools = json::array({1, 2})}) ==
        "tools: 2");
  CHECK_THROWS_WITH_AS(JinjaChatTemplate::from_tokenizer_config(json::parse(R"({"chat_template": "{% bad %}"})"), "f.json"),
                       doctest::Contains("f.json: chat template: line 1, column 4"), rlhf::config_error);
  CHECK_THROWS_AS(JinjaChatTemplate::from_tokenizer_config(json::parse(R"({"bos_token": "<s>"})"), "f"), rlhf::config_error);
  CHECK_THROWS_AS(JinjaChatTemplate::from_tokenizer_config(json::parse(R"({"chat_template": "x", "eos_token": 3})"), "f"),
                  rlhf::config_error);
}

TEST_CASE("assistant spans: from generation tags, else by rendering the conversation up to each turn") {
  const json messages = json::parse(R"([{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
    {"role": "user", "content": "Bye"}, {"role": "assistant", "content": "Ciao"}])");
  const std::string chatml =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
      "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";
  const auto spans_of = [&](const JinjaChatTemplate& chat) {
    const auto r = chat.render_with_assistant_spans(messages);
    std::vector<std::string> out;
    for (const auto& s : r.assistant_spans) out.push_back(r.text.substr(s.begin, s.end - s.begin));
    return out;
  };
  CHECK(spans_of(JinjaChatTemplate(chatml)) == std::vector<std::string>{"Hello<|im_end|>\n", "Ciao<|im_end|>\n"});

  const std::string tagged =
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{% if m.role == 'assistant' %}{% generation %}"
      "{{ m.content }}<|im_end|>{% endgeneration %}{% else %}{{ m.content }}<|im_end|>{% endif %}\n{% endfor %}";
  CHECK(spans_of(JinjaChatTemplate(tagged)) == std::vector<std::string>{"Hello<|im_end|>", "Ciao<|im_end|>"});

  // Llama 3's template ends with the assistant header whatever add_generation_prompt says: refused, not guessed.
  const std::string always_prompt = "{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}[assistant]";
  CHECK_THROWS_WITH_AS(spans_of(JinjaChatTemplate(always_prompt)), doctest::Contains("cannot be located"),
                       rlhf::config_error);
  // A template that renders an earlier turn differently once a later one follows: located by its content.
  const std::string rewrites = "{% for m in messages %}<{{ m.role }}>{{ m.content if loop.last or m.role == 'user' "
                               "else m.content|upper }};{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
  CHECK(spans_of(JinjaChatTemplate(rewrites)) == std::vector<std::string>{"HELLO;", "Ciao;"});
  // ... unless the content is changed beyond recognition (here lower-cased, marker included): refused.
  const std::string lowers = "{% for m in messages %}<{{ m.role }}>{{ m.content if loop.last or m.role == 'user' "
                             "else m.content|lower }};{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}";
  CHECK_THROWS_WITH_AS(spans_of(JinjaChatTemplate(lowers)), doctest::Contains("does not appear exactly once"),
                       rlhf::config_error);
}
