#!/usr/bin/env python3
"""Writes tests/fixtures/chat/: renders of chat templates by transformers' own Jinja environment
(transformers.utils.chat_template_utils: ImmutableSandboxedEnvironment, trim_blocks,
lstrip_blocks, loopcontrols, its tojson, raise_exception, strftime_now), for tests/test-jinja.c.

  renders.json  the real templates of tests/fixtures/chat-templates/ (Llama-3/3.1/3.2/3.3,
                SmolLM2, Qwen2.5 with tools, Mistral-Nemo, Phi-3.5, Phi-4-mini, DeepSeek-R1-Distill,
                Gemma-2) over conversations, rendered by transformers' render_jinja_template (what
                apply_chat_template calls), including conversations the templates refuse
  units.json    many small templates, one construct each, rendered in the same environment

Each case has "vars" (what the template sees) and "text" (the render) or "error" (the
exception's message, "raised": true when it came from raise_exception). strftime_now sees
the fixed time NOW (UTC); the test sets TZ=UTC.

Run with the venv that has transformers and jinja2: /opt/skvpy/bin/python scripts/make-chat-fixtures.py
"""
import datetime as _dt
import json
import os
import sys

import jinja2
import transformers
from transformers.utils import chat_template_utils as ctu

NOW = 1725357600  # 2024-09-03 10:00:00 UTC


class FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return cls.fromtimestamp(NOW, _dt.timezone.utc).replace(tzinfo=None)


ctu.datetime = FixedDatetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEMPLATES = os.path.join(ROOT, "tests", "fixtures", "chat-templates")
OUT = os.path.join(ROOT, "tests", "fixtures", "chat")

# special tokens per template family (what each model's tokenizer_config.json holds)
LLAMA3 = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
FAMILIES = {
    "meta-llama-Meta-Llama-3-8B-Instruct.jinja": LLAMA3,
    "meta-llama-Llama-3.1-8B-Instruct.jinja": LLAMA3,
    "meta-llama-Llama-3.2-3B-Instruct.jinja": LLAMA3,
    "meta-llama-Llama-3.3-70B-Instruct.jinja": LLAMA3,
    "HuggingFaceTB-SmolLM2-135M-Instruct.jinja": {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>",
                                                  "unk_token": "<|endoftext|>", "pad_token": "<|im_end|>"},
    "Qwen-Qwen2.5-7B-Instruct.jinja": {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
    "mistralai-Mistral-Nemo-Instruct-2407.jinja": {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"},
    "microsoft-Phi-3.5-mini-instruct.jinja": {"bos_token": "<s>", "eos_token": "<|endoftext|>",
                                              "unk_token": "<unk>", "pad_token": "<|endoftext|>"},
    "llama-cpp-microsoft-Phi-4-mini-instruct.jinja": {"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>"},
    "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja": {"bos_token": "<｜begin▁of▁sentence｜>",
                                                       "eos_token": "<｜end▁of▁sentence｜>"},
    "google-gemma-2-2b-it.jinja": {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>",
                                   "unk_token": "<unk>"},
}

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Get the weather in a city, in \"celsius\" or fahrenheit.",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string", "description": "The city, e.g. Zürich"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city"]}}}
CALC = {"type": "function", "function": {"name": "add", "description": "Adds two numbers.",
                                         "parameters": {"type": "object", "properties": {
                                             "a": {"type": "number"}, "b": {"type": "integer"}}}}}

U = lambda c: {"role": "user", "content": c}
A = lambda c: {"role": "assistant", "content": c}
S = lambda c: {"role": "system", "content": c}

CONVERSATIONS = [
    ([U("Hello!")], None),
    ([S("You are terse."), U("Summarize: the cat sat."), A("A cat sat."), U("Thanks")], None),
    ([S("  padded system \n"), U("\tTabs and   spaces  \n"), A(" ok ")], None),
    ([U("Ünïcödé ✓ 日本語 🎉"), A("«ok»"), U("<|eot_id|> is text here, \"quoted\" \\ back")], None),
    ([U("first"), U("second in a row")], None),
    ([A("assistant first"), U("then user")], None),
    ([S("only a system message")], None),
    ([U("What is the weather in Paris?")], [WEATHER]),
    ([S("Use tools."), U("Add 2 and 3, and weather in Oslo"), ], [WEATHER, CALC]),
    ([U("Weather in Bern?"),
      {"role": "assistant", "content": "", "tool_calls": [{"id": "call12345", "type": "function", "function": {
          "name": "get_weather", "arguments": {"city": "Bern", "unit": "celsius"}}}]},
      {"role": "tool", "tool_call_id": "call12345", "name": "get_weather", "content": "{\"temp\": 21.5}"},
      A("It is 21.5 °C.")], [WEATHER]),
    ([U("think first"), A("<think>\nhmm\n</think>\n\nThe answer is 4."), U("again")], None),
    ([{"role": "tool", "content": "orphan tool output"}, U("hi")], None),
    ([U("a"), {"role": "moderator", "content": "unknown role"}], None),
    ([U("x" * 300 + "\n\n\n" + "y")], None),
    ([S("tools but no user message")], [WEATHER]),
    ([U("two calls at once"),
      {"role": "assistant", "content": None, "tool_calls": [
          {"id": "call00001", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\": \"Oslo\"}"}},
          {"id": "call00002", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1, \"b\": 2}"}}]},
      {"role": "tool", "tool_call_id": "call00001", "content": "cold"},
      {"role": "tool", "tool_call_id": "call00002", "content": "3"}], [WEATHER, CALC]),
    ([U("a string-arguments call"),
      {"role": "assistant", "content": None, "tool_calls": [
          {"id": "call00003", "type": "function", "function": {"name": "add", "arguments": "{\"a\": 1}"}}]},
      {"role": "tool", "tool_call_id": "call00003", "content": "1"}, A("One.")], None),
]


def render_real(name, text, messages, tools, gen):
    specials = FAMILIES[name]
    vars_ = {"messages": messages, "tools": tools, "documents": None, "add_generation_prompt": gen}
    vars_.update(specials)
    case = {"template": name, "vars": vars_}
    try:
        out, _ = ctu.render_jinja_template(conversations=[messages], tools=tools, chat_template=text,
                                           add_generation_prompt=gen, **specials)
        case["text"] = out[0]
    except jinja2.exceptions.TemplateError as e:
        case["error"] = str(e)
        case["raised"] = type(e) is jinja2.exceptions.TemplateError
    except Exception as e:  # a TypeError inside the template (e.g. iterating None)
        case["error"] = f"{type(e).__name__}: {e}"
        case["raised"] = False
    return case


def real_cases():
    cases = []
    for name in sorted(FAMILIES):
        with open(os.path.join(TEMPLATES, name), encoding="utf-8") as f:
            text = f.read()
        for messages, tools in CONVERSATIONS:
            for gen in (False, True):
                cases.append(render_real(name, text, messages, tools, gen))
    return cases


MSGS = [{"role": "system", "content": " sys "}, {"role": "user", "content": "Hi  there"},
        {"role": "assistant", "content": "Hello", "tool_calls": [{"function": {"name": "f", "arguments": {"x": 1}}}]}]

# (template, vars) pairs: one construct each, plus whitespace control and errors
UNITS = [
    # output and literals
    ("plain text", {}),
    ("{{ 'a' }}{{ \"b\" }}{{ 'c' 'd' }}", {}),
    ("{{ 1 }} {{ -2 }} {{ 1.5 }} {{ 2.0 }} {{ 1e3 }} {{ 0.1 + 0.2 }} {{ 1e16 }} {{ 1.5e-7 }} {{ 0.0001 }}", {}),
    ("{{ true }} {{ false }} {{ none }} {{ True }} {{ None }}", {}),
    ("{{ [1, 'a', none, true, 1.5] }} {{ (1, 2) }} {{ (1,) }} {{ {'a': 1, 'b': [2]} }}", {}),
    ("{{ 'it\\'s' }} {{ \"say \\\"hi\\\"\" }} {{ 'tab\\tnl\\nuni\\u00e9\\x41' }}", {}),
    ("{{ ['it\\'s', \"q\\\"\", 'back\\\\slash', 'nl\\n'] }}", {}),
    ("{{ undefined_var }}|{{ x }}", {"x": "v"}),
    # arithmetic and operators
    ("{{ 7 // 2 }} {{ -7 // 2 }} {{ 7 % 3 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 2 * 3 + 1 }} {{ 10 - 2 - 3 }}", {}),
    ("{{ 'ab' + 'cd' }} {{ [1] + [2, 3] }} {{ 'x' ~ 1 ~ none ~ true }} {{ 'ab' * 3 }}", {}),
    ("{{ 1 == 1.0 }} {{ 'a' < 'b' }} {{ 2 >= 3 }} {{ 1 < 2 < 3 }} {{ 1 != 2 }} {{ [1, 2] == [1, 2] }}", {}),
    ("{{ 'b' in 'abc' }} {{ 2 in [1, 2] }} {{ 'k' in {'k': 1} }} {{ 'z' not in 'abc' }} {{ 'role' in m }}", {"m": {"role": "user"}}),
    ("{{ not true }} {{ true and 'x' }} {{ false or 'y' }} {{ 0 or [] or 'z' }} {{ not x is defined }}", {}),
    ("{{ 'yes' if c else 'no' }} {{ 'yes' if not c else 'no' }} [{{ 'only' if c }}]", {"c": False}),
    # attribute and item access, slicing
    ("{{ m.role }} {{ m['content'] }} {{ m.missing is defined }} {{ l[0] }} {{ l[-1] }} {{ l[5] is defined }}", {"m": {"role": "user", "content": "c"}, "l": [1, 2, 3]}),
    ("{{ l[1:] }} {{ l[:-1] }} {{ l[::-1] }} {{ l[::2] }} {{ s[1:3] }} {{ s[-2:] }} {{ s[::-1] }} {{ l[10:] }}", {"l": [1, 2, 3, 4], "s": "héllo"}),
    ("{{ s[0] }}{{ s[-1] }} {{ s|length }}", {"s": "日本語"}),
    ("{{ messages[0].content }}{{ messages[1]['role'] }}{{ messages[2].tool_calls[0].function.arguments.x }}", {"messages": MSGS}),
    ("{{ none.attr is defined }} {{ 'abc'.foo is defined }}", {}),
    # statements
    ("{% if x %}a{% elif y %}b{% else %}c{% endif %}", {"x": False, "y": True}),
    ("{% if x %}a{% elif y %}b{% else %}c{% endif %}", {"x": False, "y": False}),
    ("{% for i in [1, 2, 3] %}{{ i }}{% if not loop.last %}, {% endif %}{% endfor %}", {}),
    ("{% for i in 'abc' %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }} {% endfor %}", {}),
    ("{% for i in [] %}x{% else %}empty{% endfor %}", {}),
    ("{% for i in none_var %}x{% else %}undefined iterates as empty{% endfor %}", {}),
    ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{% for k in d %}{{ k }}{% endfor %}", {"d": {"b": 1, "a": [2]}}),
    ("{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.role }} {% endfor %}", {"messages": MSGS}),
    ("{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}", {}),
    ("{% for i in range(3) %}{% for j in range(i) %}{{ i }}{{ j }}{{ loop.index }} {% endfor %}{{ loop.index }}|{% endfor %}", {}),
    ("{% for x in [1, 2] %}{{ loop.previtem is defined }}{{ loop.nextitem }}{% endfor %}", {}),
    ("{% set x = 1 %}{% for i in [1] %}{% set x = 2 %}{{ x }}{% endfor %}{{ x }}", {}),
    ("{% set x = 1 %}{% if true %}{% set x = 2 %}{% endif %}{{ x }}", {}),
    ("{% set ns = namespace(found=false, n=0) %}{% for i in [1, 2, 3] %}{% set ns.n = ns.n + i %}{% if i == 2 %}{% set ns.found = true %}{% endif %}{% endfor %}{{ ns.found }} {{ ns.n }}", {}),
    ("{% set ns = namespace() %}{% set ns.a = 'x' %}{{ ns.a }}", {}),
    ("{% set a, b = [1, 2] %}{{ b }}{{ a }}", {}),
    ("{% set t = 1, 2 %}{{ t }}", {}),
    ("{% set block %}inner {{ 1 + 1 }}{% endset %}[{{ block }}]", {}),
    ("{% set block | upper %}shout{% endset %}{{ block }}", {}),
    ("{% macro greet(name, punct='!') %}Hello {{ name }}{{ punct }}{% endmacro %}{{ greet('Ann') }} {{ greet('Bo', punct='?') }}", {}),
    ("{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}bold{% endcall %}", {}),
    ("{% raw %}{{ not rendered }} {% if %}{% endraw %}", {}),
    ("{# a comment #}x{# another\nmultiline #}y", {}),
    # whitespace control, trim_blocks, lstrip_blocks
    ("a\n{% if true %}\nb\n{% endif %}\nc\n", {}),
    ("a\n    {% if true %}\n    b\n    {% endif %}\nc", {}),
    ("a  {%- if true -%}  b  {%- endif -%}  c", {}),
    ("a  {{- 'x' -}}  b {{ 'y' }}\n c", {}),
    ("a\n  {{ 'v' }}\n  {%+ if true %}x{% endif %}\n", {}),
    ("  {% for i in [1, 2] %}\n  - {{ i }}\n  {% endfor %}\n", {}),
    ("x {# c #}\ny\n  {# indented comment #}\nz", {}),
    ("line1\r\nline2\rline3\n\n", {}),
    ("{% if true %}  \t\n{% endif %}tail", {}),
    ("\u3000{% if true %}x{% endif %}", {}),
    ("a\n  {%- if true %}\n  b{% endif %}", {}),
    ("{{ 'a' }}\n\n", {}),
    # methods
    ("[{{ s.strip() }}][{{ s.lstrip() }}][{{ s.rstrip() }}][{{ 'xxhixx'.strip('x') }}]", {"s": "  \u00a0pad \n"}),
    ("{{ 'a,b,,c'.split(',') }} {{ '  a b  c '.split() }} {{ 'a b c'.split(' ', 1) }} {{ 'x</think>y</think>z'.split('</think>')[-1] }}", {}),
    ("{{ 'aaa'.replace('a', 'b') }} {{ 'aaa'.replace('a', 'b', 2) }} {{ 'ab'.replace('', '-') }}", {}),
    ("{{ 'hello'.startswith('he') }} {{ 'hello'.endswith('lo') }} {{ 'hello'.startswith(('x', 'h')) }}", {}),
    ("{{ 'Hello World'.upper() }} {{ 'Hello World'.lower() }} {{ 'hello wORLD 2nd-part'.title() }} {{ 'hELLO'.capitalize() }}", {}),
    ("{{ d.get('a') }} {{ d.get('z') }} {{ d.get('z', 'dflt') }} {{ d.keys() | list }} {{ d.values() | list }} {{ d.items() | list }}", {"d": {"a": 1, "b": None}}),
    ("{{ ', '.join(['a', 'b']) }}", {}),
    # filters
    ("{{ s|length }} {{ l|length }} {{ d|length }} {{ u|length }} {{ l|count }}", {"s": "héllo", "l": [1, 2], "d": {"a": 1}}),
    ("[{{ s|trim }}] [{{ 'xxaxx'|trim('x') }}]", {"s": "\n\t a b \u2003"}),
    ("{{ v|tojson }}", {"v": {"b": [1, 2.5, None, True], "a": "é\"\n\t\u0001/<>&'", "c": {}, "d": []}}),
    ("{{ v|tojson(indent=2) }}", {"v": {"b": [1, {"x": []}], "a": "s"}}),
    ("{{ v|tojson(indent=4) }}|{{ v|tojson(sort_keys=true) }}|{{ v|tojson(separators=(',', ':')) }}", {"v": {"z": 1, "a": [1, 2]}}),
    ("{{ 1.0|tojson }} {{ 'x'|tojson }} {{ none|tojson }} {{ [1e20, 1e-7, -0.5]|tojson }}", {}),
    ("{{ 1|string }}{{ none|string }}{{ [1, 'a']|string }}", {}),
    ("{{ 'abc'|list }} {{ d|list }} {{ l|first }} {{ l|last }} {{ 'xyz'|first }} {{ []|first is defined }}", {"d": {"k": 1, "j": 2}, "l": [1, 2, 3]}),
    ("{{ l|join }} {{ l|join(', ') }} {{ ms|join('-', attribute='role') }}", {"l": [1, "b", None], "ms": MSGS}),
    ("{{ ms|map(attribute='role')|list }} {{ ['a', 'B']|map('upper')|join }} {{ ms|map(attribute='nope', default='d')|list }}", {"ms": MSGS}),
    ("{{ ms|selectattr('role', 'equalto', 'user')|list|length }} {{ ms|rejectattr('role', 'equalto', 'user')|map(attribute='role')|join(',') }} {{ ms|selectattr('tool_calls')|list|length }} {{ ms|selectattr('tool_calls', 'defined')|list|length }}", {"ms": MSGS}),
    ("{{ [1, 0, 2, none]|select|list }} {{ [1, 2, 3, 4]|select('odd')|list }} {{ ['a', 'code_interpreter']|reject('equalto', 'code_interpreter')|join }}", {}),
    ("{{ u|default('d') }} {{ ''|default('d') }} {{ ''|default('d', true) }} {{ 0|d('z', boolean=true) }} {{ none|default('n') }}", {}),
    ("{% for k, v in d|items %}{{ k }}{{ v }}{% endfor %}", {"d": {"x": 1, "y": 2}}),
    ("{{ '42'|int + 1 }} {{ '3.9'|int }} {{ 'x'|int }} {{ 'x'|int(7) }} {{ 2.7|int }} {{ true|int }}", {}),
    ("{{ 'MiXed'|upper }} {{ 'MiXed'|lower }} {{ 'hello WORLD'|capitalize }} {{ 'aXa'|replace('a', 'b') }} {{ 'aaa'|replace('a', 'b', 1) }}", {}),
    ("{{ [3, 1]|reverse|list }} {{ 'abc'|reverse }} {{ -3|abs }} {{ '1.5'|float }}", {}),
    # tests
    ("{{ x is defined }} {{ y is undefined }} {{ n is none }} {{ s is string }} {{ 1 is number }} {{ d is mapping }} {{ l is iterable }} {{ s is iterable }} {{ 1 is iterable }} {{ l is sequence }}", {"x": 1, "n": None, "s": "a", "d": {}, "l": []}),
    ("{{ 3 is odd }} {{ 4 is even }} {{ 6 is divisibleby 3 }} {{ 1 is integer }} {{ 1.0 is float }} {{ true is boolean }} {{ x is true }} {{ 'a' is equalto 'a' }} {{ 'a' is eq('b') }} {{ 1 is not none }} {{ 'abc' is lower }}", {"x": True}),
    ("{{ 2 is in [1, 2] }} {{ 5 is gt 3 }} {{ none is sameas none }} {{ raise_exception is defined }} {{ strftime_now is defined }} {{ f is callable }}", {}),
    # globals
    ("{{ strftime_now('%Y-%m-%d %d %b %Y %A %H:%M') }}", {}),
    ("{{ range(3)|list }} {{ range(1, 7, 2)|list }} {{ range(5, 0, -2)|list }}", {}),
    ("{{ dict(a=1, b='x') }} {{ namespace(a=1).a }}", {}),
    # scoping, precedence, numbers and whitespace details
    ("{% set x = 'out' %}{% for i in [1,2] %}{{ x }}{% set x = i %}{{ x }}{% endfor %}{{ x }}", {}),
    ("{% for i in [1,2] %}{% if i == 2 %}{{ y }}{% endif %}{% set y = i %}{% endfor %}[{{ y }}]", {}),
    ("{%- raw -%}  x  {%- endraw -%}  y", {}),
    ("  {% raw %}\n  a\n  {% endraw %}\nb", {}),
    ("{% macro m(a) %}{{ a }}{{ caller(a * 2) }}{% endmacro %}{% call(v) m(3) %}[{{ v }}]{% endcall %}", {}),
    ("{{ {'b': 1, 'a': 2} }}{{ {'a': none}|tojson }}{{ [1, [2, [3]]]|tojson(indent=1) }}", {}),
    ("{{ 'x' if none else 'y' }}{{ 1 if 0 }}{{ [] or 'e' }}", {}),
    ("{{ 3 > 2 > 1 }}{{ 1 in [1.0] }}{{ true == 1 }}{{ 'a' ~ 1.0 }}", {}),
    ("{# {% if %} #}{{ 'ok' }}", {}),
    ("{{ '\\\\n' }}|{{ '\\q' }}|{{ '\\101' }}", {}),
    ("{{ 10 / 4 }} {{ 10 // 4 }} {{ 2 ** -1 }} {{ -2 ** 2 }} {{ 1e300 * 1e10 }} {{ 7 % -3 }}", {}),
    ("{{ 'abc'[1:] }}{{ 'abc'[-5:] }}{{ [1,2,3][::-1][0] }}{{ [1,2,3][-1:0:-1] }}", {}),
    ("{% for a, b in [[1, 2], (3, 4)] %}{{ a }}{{ b }}{% endfor %}", {}),
    ("{% set d = {'k': [1, 2]} %}{{ d.k[1] }}{{ d['k'][0] }}{{ d.get('k')|length }}", {}),
    ("{{ '  a  b  '.split(' ') }}{{ 'a\\nb\\r\\nc'.split() }}{{ ''.split() }}{{ ''.split(',') }}", {}),
    ("{{ x|default('d')|upper }}{{ (x or 'z')|upper }}", {}),
    ("{% if not messages %}empty{% endif %}{% if messages is none %}none{% endif %}", {"messages": []}),
    ("a {%- if true %} b {% endif -%} c", {}),
    ("{{ messages|map(attribute='content')|join('|') }}{{ messages|selectattr('role', 'in', ['user'])|list|length }}", {"messages": MSGS}),
    ("{{ (messages|last).role }}{{ messages[-1]['content'] }}", {"messages": MSGS}),
    ("{{ 'a' 'b' ~ 'c' }}{{ 5|string + 'x' }}{{ namespace(a=[1]).a + [2] }}", {}),
    ("{{ {'a': 1}.items()|list }}{{ {'a': 1}|items|list }}{{ -1|abs }}{{ (-1)|abs }}", {}),
    ("{{ 1 if true else 2 if false else 3 }}{{ not 1 == 2 }}{{ not (1 == 2) }}{{ - 2 + 3 }}", {}),
    ("x\n{%- for i in range(2) %}\n  {{ i }}\n{%- endfor %}\ny", {}),
    ("{{ 0.1 }} {{ 100.0 }} {{ 1e-5 }} {{ 123456789012345678.0 }} {{ 1.0e15 }} {{ -0.0 }} {{ 2.5e-4 }}", {}),
    ("{% for m in messages %}{% if loop.index0 > 0 and messages[loop.index0 - 1].role == 'user' %}after-user {% endif %}{{ m.role }} {% endfor %}", {"messages": MSGS}),
    ("{% set ns = namespace(items=[]) %}{% for i in range(3) %}{% set ns.items = ns.items + [i * i] %}{% endfor %}{{ ns.items }}", {}),
    ("{% for x in l %}{{ loop.index }}{% else %}none{% endfor %}|{% for x in l if x > 5 %}{{ x }}{% else %}filtered out{% endfor %}", {"l": [1, 2]}),
    ("{{ v.a.b }}|{{ v['a']['c'] is defined }}|{{ v.a.get('b') }}", {"v": {"a": {"b": "deep"}}}),
    ("{{ content is string }} {{ content[0].text }} {% for part in content %}{% if part.type == 'text' %}{{ part.text }}{% endif %}{% endfor %}", {"content": [{"type": "text", "text": "T"}, {"type": "image"}]}),
    ("\t{% if true %}\n\tx\n\t{%- endif %}\n", {}),
    ("{% if true %}\n{% endif %}\n\n{% if true %}x{% endif %}", {}),
    ("{{- '  lead' }}   {{- 'x' }}\n  {{ 'y' -}}  \n  z", {}),
    ("{%+ if true %}a{% endif %}\n    {%+ if true %}b{% endif %}", {}),
    ("{{ 'héllo ÉCOLE σοφία Привет'.upper() }}|{{ 'ÉCOLE Привет'|lower }}|{{ 'élan vital ñu'.title() }}|{{ 'école'|capitalize }}|{{ 'é' is lower }}{{ 'É' is upper }}{{ '1' is lower }}", {}),
    # errors
    ("{{ raise_exception('Custom: roles must alternate') }}", {}),
    ("before{% if messages|length == 0 %}{{ raise_exception('no messages') }}{% endif %}", {"messages": []}),
    ("{{ x|no_such_filter }}", {"x": 1}),
    ("{{ x is no_such_test }}", {"x": 1}),
    ("{{ undefined_thing.attr }}", {}),
    ("{{ 'a' + 1 }}", {}),
    ("{{ 'a' + u }}", {}),
    ("{{ 1 / 0 }}", {}),
    ("{% for x in 5 %}{% endfor %}", {}),
    ("{% set x = 1 %}{% set x.attr = 2 %}", {}),
    ("{{ 'a' < 1 }}", {}),
    ("line1\nline2 {% if %}", {}),
    ("{% for x in y %}no end", {}),
    ("{{ (1 + 2 }}", {}),
    ("{% endif %}", {}),
    ("{% include 'other.jinja' %}", {}),
    ("{{ 'unterminated }}", {}),
    ("{% set ns = namespace() %}{% set ns._private = 1 %}", {}),
    ("{{ range(1000000)|length }}", {}),
    ("{% set a, b = [1, 2, 3] %}", {}),
]


def render_unit(template, vars_):
    case = {"template": template, "vars": vars_}
    try:
        case["text"] = ctu._compile_jinja_template(template).render(**vars_)
    except jinja2.exceptions.TemplateSyntaxError as e:
        case["error"] = f"line {e.lineno}: {e.message}"
        case["raised"] = False
        case["syntax"] = True
        case["line"] = e.lineno
    except jinja2.exceptions.TemplateError as e:
        case["error"] = str(e)
        case["raised"] = type(e) is jinja2.exceptions.TemplateError
    except Exception as e:
        case["error"] = f"{type(e).__name__}: {e}"
        case["raised"] = False
    return case


def dump(path, obj):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, ensure_ascii=False, indent=1)
        f.write("\n")


def main():
    os.makedirs(OUT, exist_ok=True)
    meta = {"transformers": transformers.__version__, "jinja2": jinja2.__version__, "now": NOW}
    dump(os.path.join(OUT, "renders.json"), {**meta, "cases": real_cases()})
    dump(os.path.join(OUT, "units.json"), {**meta, "cases": [render_unit(t, v) for t, v in UNITS]})
    return 0


if __name__ == "__main__":
    sys.exit(main())
