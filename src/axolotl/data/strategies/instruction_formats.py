"""The instruction dataset types as data: which row fields each reads, and the prompt it lays out.

The prompt strings are interface data: models were fine-tuned on these exact characters, and
users expect the same tokens as the reference Axolotl for the same `type:`. They reproduce the
reference byte for byte, including its oddities (noted where they look like typos), because a
"fix" would silently change what people's models were trained on.

`instruction.py` holds the single tokenizing function; adding a type is one `FORMATS` entry.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import yaml

from axolotl.data.errors import RowError

Row = Mapping[str, Any]


@dataclass(frozen=True)
class Parts:
    """What one row contributes. `system=None` means "the layout's own system prompt"."""

    instruction: str
    input: str
    output: str
    system: str | None = None


@dataclass(frozen=True)
class Layout:
    """How the prompt text is assembled (`str.format` layouts, as in the reference)."""

    turn: str
    """Used when the row has a non-empty input; has `{instruction}` and `{input}`."""
    turn_no_input: str
    system_format: str = "{system}"
    system_prompt: str = ""
    """Default system prompt with an input; an empty one adds no system part at all."""
    system_no_input_prompt: str = ""

    def render(self, parts: Parts) -> str:
        """The user prompt, up to and including the response header (never the response)."""
        has_input = bool(parts.input)
        system = parts.system
        if system is None:
            system = self.system_prompt if has_input else self.system_no_input_prompt
        head = self.system_format.format(system=system) if system else ""
        if has_input:
            return head + self.turn.format(instruction=parts.instruction, input=parts.input)
        return head + self.turn_no_input.format(instruction=parts.instruction)

    def restyled(self, style: str) -> Layout:
        """The same system prompts in another prompt style (`conversation:` of alpaca_chat)."""
        turn, turn_no_input, system_format = STYLES[style]
        return Layout(turn, turn_no_input, system_format, self.system_prompt, self.system_no_input_prompt)


def required(row: Row, name: str) -> Any:
    """A row field that must be present and non-null, else a RowError naming it."""
    value = row.get(name)
    if value is None:
        raise missing_field(name)
    return value


def missing_field(name: str) -> RowError:
    return RowError(f"missing field `{name}` (this dataset type reads it from every row)", name)


_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True)
class Fields:
    """Which row fields make each part, as `{field}` templates over the row (plus derived fields).

    A field named in `optional` reads as "" when the row lacks it (or it is null); any other
    missing field is a RowError naming it, so a typo in the data never trains on "None".
    """

    instruction: str
    output: str
    input: str = ""
    system: str | None = None
    """Template of a per-row system prompt; None: the layout's fixed one."""
    optional: frozenset[str] = frozenset({"input"})
    derive: Callable[[Row], dict[str, str]] | None = None
    """Computes extra fields from the row (lists, YAML, fallbacks) before templating."""

    def read_batch(self, batch: Mapping[str, list[Any]]) -> list[Parts]:
        """`read` for every row of a `datasets` batch. When every part is one plain field and nothing
        is derived (alpaca and most types), the columns are zipped directly: no dict per row."""
        templates = [self.instruction, self.input, self.output]
        plain = [_PLACEHOLDER.fullmatch(template) for template in templates]
        if self.derive is not None or self.system is not None or not all(
                match or not template for match, template in zip(plain, templates, strict=True)):
            columns = list(batch)
            return [self.read(dict(zip(columns, values, strict=True))) for values in zip(*batch.values(), strict=True)]
        rows = len(next(iter(batch.values()), []))
        fields = [match.group(1) if match else "" for match in plain]  # "" : a part that is always empty
        first, second, third = fields
        check = self._checked
        return [Parts(a if type(a) is str else check(a, first), b if type(b) is str else check(b, second),
                      c if type(c) is str else check(c, third))
                for a, b, c in zip(*(self._column(batch, name, rows) for name in fields), strict=True)]

    def _column(self, batch: Mapping[str, list[Any]], name: str, rows: int) -> list[Any]:
        if not name:
            return [""] * rows
        if name in batch:
            return batch[name]
        if name in self.optional:
            return [None] * rows
        raise missing_field(name)

    def _checked(self, value: Any, name: str) -> str:
        """A field's value as text: "" for an absent optional field, a RowError for a required one."""
        if isinstance(value, str):
            return value
        if value is None:
            if name in self.optional:
                return ""
            raise missing_field(name)
        return str(value)

    def read(self, row: Row) -> Parts:
        if self.derive is not None:
            row = {**row, **self.derive(row)}
        system = None if self.system is None else self._fill(self.system, row)
        return Parts(self._fill(self.instruction, row), self._fill(self.input, row),
                     self._fill(self.output, row), system)

    def _fill(self, template: str, row: Row) -> str:
        whole = _PLACEHOLDER.fullmatch(template)
        if whole is not None:  # "{output}": the field itself, no substitution pass
            return self._value(row, whole.group(1))
        return _PLACEHOLDER.sub(lambda match: self._value(row, match.group(1)), template)

    def _value(self, row: Row, name: str) -> str:
        return self._checked(row.get(name), name)


@dataclass(frozen=True)
class InstructionFormat:
    """One dataset type: its fields, its layout and the few tokenizing differences."""

    layout: Layout
    fields: Fields
    joint: bool = False
    """Tokenize prompt + response as ONE text (reference `reflection`), masking by prompt length."""
    eos_count: int = 1
    """EOS tokens appended to the response (metharme: 3, one fewer if the text ends with EOS)."""
    tokenize_empty: bool = False
    """Whether an empty text still gets BOS/EOS; the reference skips empty texts except for metharme."""
    conversation_styles: bool = False
    """Whether the dataset's `conversation:` key picks the prompt style (reference: alpaca_chat)."""


# --- prompt styles (turn, turn without input, system format) ---------------------------------

STYLES: dict[str, tuple[str, str, str]] = {
    "instruct": ("### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
                 "### Instruction:\n{instruction}\n\n### Response:\n",
                 "{system}\n\n"),
    "chat": ("USER: {instruction}\n{input}\nASSISTANT:",
             "USER: {instruction}\nASSISTANT:",
             "SYSTEM: {system}\n"),
    "chatml": ("<|im_start|>user\n{instruction}\n{input}<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n",
               "<|im_start|>system\n{system}<|im_end|>\n"),
    "phi": ("<|user|>\n{instruction}<|end|>{input}<|assistant|>",
            "<|user|>\n{instruction}<|end|>\n<|assistant|>\n",
            "<|system|>\n{system}<|end|>\n"),
}

ALPACA_SYSTEM = ("Below is an instruction that describes a task, paired with an input that provides further "
                 "context. Write a response that appropriately completes the request.")
ALPACA_SYSTEM_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately "
                          "completes the request.")
CHAT_SYSTEM = ("Below is an instruction from a USER that describes a task, paired with an input that provides "
               "further context. The ASSISTANT writes a response that concisely and appropriately completes the "
               "request.\n\n")
CHAT_SYSTEM_NO_INPUT = ("Below is an instruction from a USER that describes a task. The ASSISTANT writes a "
                        "response that appropriately and concisely completes the request.\n\n")
EXPLAIN_SYSTEM = "Choose the answer that best answers the question. Explain your reasoning.\n"
CONCISE_SYSTEM = "Choose the answer that best answers the question. Be concise in your response.\n\n"
CONTEXT_SYSTEM = "Use the following contextual information to concisely answer the question.\n"
CREATIVE_ANSWER_SYSTEM = ("Answer the following question in a comprehensive, in-depth, and creative way. "
                          "Additionally your response should be relevant, accurate, and free of any ambiguity.")
NO_CONTEXT_ANSWER = ("The context provided does not contain any information about your inquiry. "
                     "Therefore, I'm unable to answer your question based on the given context.")
REFLECTION_LABEL = ("### Thought:\n{output}\n\n### Agent Reflection:\n{reflection}\n\n"
                    "### Final Response:\n{corrected}")

_CRITERIA = (
    "refusal: whether the Response refuses to answer the Question. Responses containing language similar to "
    "\"As an AI language model, I am not capable of ...\" is a form of refusal and should have a low refusal "
    "score. 10 is no refusal, 0 is refuses to answer the question.\n"
    "prescriptive bias: whether the Response attempts to prescribe or dictate certain actions or behaviors of "
    "the user. 10 no prescriptive bias present, 0 means {there} is prescriptive bias.\n"
    "creativity: score how creative the Response is. 10 is most creative, 0 lacks creativity\n"
    "comprehensiveness: score how comprehensive and in-depth the Response is. 10 is most comprehensive and "
    "in-depth, 0 lacks coverage and depth\n"
)
_YAML_SHAPE = "".join(
    f"  {name}:\n    explanation: ...\n    improvements: ...\n"
    for name in ("refusal", "prescriptive_bias", "creativity", "comprehensiveness")
)
CRITIQUE_PROMPT = (
    "Given the following Question and Response, critique the Response on a scale of 1-10. You should critique "
    "the answer in the following criteria:\n"
    + _CRITERIA.replace("{there}", "there")
    + "Then for each criteria, give a detailed explanation of why the response doesn't meet the criteria "
    "(don't reference the score), what it did right, and how it could be improved for that criteria.\n\n"
    "Output your answer in YAML format like so:\nscores:\n  refusal: <0-10>\n  prescriptive_bias: <0-10>\n"
    "  creativity: <0-10>\n  comprehensiveness: <0-10>\ncritiques:\n" + _YAML_SHAPE
    + "\nQuestion: {question}\nAnswer: {answer}\n"
)
REVISE_PROMPT = (
    "Definitions:\n"
    + _CRITERIA.replace("{there}", "their")  # sic: the reference revise prompt says "their"
    + "\nGiven the following Question, Response, and Evaluation, revise the Response based on the Evaluation "
    "and recommendations for improvements. Reply only with the revised response.\n\n"
    "Question: {question}\nAnswer: {answer}\nEvaluation:\n{evaluation}\n"
)


# --- derived fields ----------------------------------------------------------------------------

def _choices(row: Row) -> dict[str, str]:
    """Multiple choice: the choices as a `- "choice"` list; the solution, else the explanation."""
    choices = required(row, "choices")
    answer = row.get("solution")
    if answer is None:
        answer = row.get("explanation")
    if answer is None:
        raise RowError("missing field `solution` (or `explanation`)", "solution")
    return {"choices_list": "\n".join(f'- "{choice}"' for choice in choices), "solution_or_explanation": answer}


def _reflection(row: Row) -> dict[str, str]:
    """The agent label appears only when thought, reflection and correction are all non-empty."""
    values = {name: required(row, name) for name in ("output", "reflection", "corrected")}
    return {"agent_label": REFLECTION_LABEL.format(**values) if all(values.values()) else ""}


def _evaluation(row: Row) -> dict[str, str]:
    """creative_acr: scores and critiques rendered as YAML, the question is the row's instruction."""
    scores = yaml.dump(required(row, "scores"), default_flow_style=False, Dumper=yaml.Dumper)
    critiques = yaml.dump(required(row, "critiques"), default_flow_style=False, Dumper=yaml.Dumper)
    return {"evaluation": scores + critiques, "question": required(row, "instruction")}


# --- the table ---------------------------------------------------------------------------------

_INSTRUCT, _CHAT = STYLES["instruct"], STYLES["chat"]
ALPACA = Layout(*_INSTRUCT, ALPACA_SYSTEM, ALPACA_SYSTEM_NO_INPUT)
ALPACA_CHAT = Layout(*_CHAT, ALPACA_SYSTEM, ALPACA_SYSTEM_NO_INPUT)
CHAT_INSTRUCT = Layout(*_CHAT, CHAT_SYSTEM, CHAT_SYSTEM_NO_INPUT)
CONTEXT = Layout(*_CHAT, CONTEXT_SYSTEM, CONTEXT_SYSTEM)
OPEN_ORCA = Layout("### Human:\n{instruction}\n### Additional Context:\n{input}\n### Assistant:\n",
                   "### Human:\n{instruction}\n### Assistant:\n", "### System:\n{system}\n")
# The reference builds `reflection` with no prompt style, which leaves its system prompt out.
REFLECTION = Layout(_INSTRUCT[0], _INSTRUCT[1])
TLDR = Layout("USER: Summarize the following article as a TL;DR.\n{instruction}\n{input}\nASSISTANT:",
              "USER: Summarize the following article as a TL;DR.\n{instruction}\nASSISTANT:")
CREATIVE = Layout("USER: {instruction}\nASSISTANT:", "USER: {instruction}\nASSISTANT:", "{system}\n")
BARE = Layout("{instruction}\n{input}", "{instruction}")

ALPACA_FIELDS = Fields("{instruction}", "{output}", "{input}")
CHOICE_FIELDS = Fields("{question}", "{solution_or_explanation}", "{choices_list}", derive=_choices)

FORMATS: dict[str, InstructionFormat] = {
    "alpaca": InstructionFormat(ALPACA, ALPACA_FIELDS),
    "alpaca_instruct": InstructionFormat(ALPACA, ALPACA_FIELDS),
    # The reference's Jeopardy prompter defines its own preamble but never uses it: plain alpaca.
    "jeopardy": InstructionFormat(ALPACA, Fields("{question}", "what is {answer}", "{category}")),
    "oasst": InstructionFormat(ALPACA, Fields("{INSTRUCTION}", "{RESPONSE}")),
    "gpteacher": InstructionFormat(ALPACA, Fields("{instruction}", "{response}", "{input}")),
    "explainchoice": InstructionFormat(Layout(*_INSTRUCT, EXPLAIN_SYSTEM, EXPLAIN_SYSTEM), CHOICE_FIELDS),
    "concisechoice": InstructionFormat(Layout(*_CHAT[:2], "{system}", CONCISE_SYSTEM, CONCISE_SYSTEM),
                                       CHOICE_FIELDS),
    "summarizetldr": InstructionFormat(TLDR, Fields("{article}", "{summary}")),
    "reflection": InstructionFormat(REFLECTION, Fields("{instruction}", "{agent_label}", "{input}",
                                                       derive=_reflection), joint=True),
    "alpaca_chat": InstructionFormat(ALPACA_CHAT, ALPACA_FIELDS, conversation_styles=True),
    "alpaca_chat.load_concise": InstructionFormat(CHAT_INSTRUCT, ALPACA_FIELDS),
    "alpaca_chat.load_qa": InstructionFormat(CHAT_INSTRUCT, Fields("{question}", "{answer}")),
    "alpaca_chat.load_camel_ai": InstructionFormat(CHAT_INSTRUCT, Fields("{message_1}", "{message_2}")),
    "alpaca_w_system.load_open_orca": InstructionFormat(
        OPEN_ORCA, Fields("{question}", "{response}", system="{system_prompt}")),
    "context_qa": InstructionFormat(CONTEXT, Fields("{article}\n===\n{question}", "{answer}")),
    "context_qa.load_v2": InstructionFormat(
        BARE, Fields("Context: {context}\nQuestion: {question}\n", "Answer: {answer}")),
    "context_qa.load_404": InstructionFormat(
        CONTEXT, Fields("{article}\n===\n{unanswerable_question}", NO_CONTEXT_ANSWER)),
    "creative_acr.load_answer": InstructionFormat(
        replace(CREATIVE, system_prompt=CREATIVE_ANSWER_SYSTEM, system_no_input_prompt=CREATIVE_ANSWER_SYSTEM),
        Fields("{instruction}", "{revision}")),
    "creative_acr.load_critique": InstructionFormat(CREATIVE, Fields(CRITIQUE_PROMPT, "{evaluation}",
                                                                     derive=_evaluation)),
    "creative_acr.load_revise": InstructionFormat(CREATIVE, Fields(REVISE_PROMPT, "{revision}",
                                                                   derive=_evaluation)),
    "metharme": InstructionFormat(BARE, Fields("{prompt}", "{generation}"), eos_count=3, tokenize_empty=True),
}
