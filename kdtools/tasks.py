"""The paper's domain tasks: where their data lives and how a row becomes a conversation.

Rows keep the real datasets' schemas (Flores-200, DialogSum, ARC); `to_messages` turns one into
Tulu 3's `messages` form with the prompt the student is trained and evaluated on. The toy world
generates the same schemas under <results>/<world>/world/tasks/<task>/<split>.jsonl.
"""

from __future__ import annotations

from pathlib import Path

from kdtools import paths
from kdtools.errors import KdError

TASKS = ("translation", "summarization", "arc")
LETTERS = "ABCDEFGHIJ"
# the datasets' names, as the paper and users say them, for the task names kdtools writes
ALIASES = {"flores": "translation", "flores200": "translation", "flores-200": "translation",
           "dialogsum": "summarization", "arc-challenge": "arc", "arc_challenge": "arc"}


def canonical_task(task: str) -> str:
    """'dialogsum' -> 'summarization' (ALIASES); any other name as is."""
    return ALIASES.get(task.lower(), task)


def check_task(task: str) -> str:
    if task not in TASKS:
        raise KdError(f"unknown task '{task}': use 'general' or one of {', '.join(TASKS)}")
    return task


ANSWER_LETTER = "Answer with the letter of the correct option."


def mc_question(question: str, options: list[str]) -> str:
    """The question and its lettered options, one per line: a multiple-choice task's input."""
    return "\n".join([question] + [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)])


def mc_prompt(question: str, options: list[str]) -> str:
    """The one multiple-choice layout (ARC, GPQA, MMLU-Pro and the toy instructions alike)."""
    return f"{mc_question(question, options)}\n{ANSWER_LETTER}"


def input_text(task: str, row: dict) -> str:
    """The text of a row's input field: the source sentence (Flores-200's sentence_asm_Beng), the
    dialogue, or the question with its lettered options. What synthetic inputs imitate."""
    if task == "translation":
        return row["sentence_asm_Beng"]
    if task == "summarization":
        return row["dialogue"]
    return mc_question(row["question"], row["choices"]["text"])


def prompt(task: str, row: dict, language: str = "Assamese") -> str:
    """The user turn for one row of `task` (no answer); `language` is the translation source
    language's name (the world's `source_language`: Assamese, or the toy world's Amsi)."""
    if task == "arc":  # exactly mc_prompt: options are not stripped as bare inputs are
        return mc_prompt(row["question"], row["choices"]["text"])
    return prompt_from_input(task, input_text(task, row), language)


def prompt_from_input(task: str, text: str, language: str = "Assamese") -> str:
    """The user turn for a bare input of `task` (a synthetic input): the same layout as
    `prompt`, so a teacher annotates synthetic inputs exactly as students will be asked."""
    if task == "translation":
        return f"Translate from {language} to English: {text}"
    if task == "summarization":
        return f"Summarize the dialogue:\n{text}"
    return text if text.rstrip().endswith(ANSWER_LETTER) else f"{text.rstrip()}\n{ANSWER_LETTER}"


def reference(task: str, row: dict) -> str:
    """The gold answer of one row of `task`."""
    if task == "translation":
        return row["sentence_eng_Latn"]
    if task == "summarization":
        return row["summary"]
    return row["answerKey"]


def to_messages(task: str, row: dict, index: int, language: str = "Assamese") -> dict:
    return {
        "id": f"{task}_{row.get('id', index)}",
        "messages": [{"role": "user", "content": prompt(task, row, language)},
                     {"role": "assistant", "content": reference(task, row)}],
        "source": f"task/{task}",
    }


def splits_dir(world, task: str) -> Path:
    """Where `kdtools data --task` writes a sourced world's splits (world.tasks)."""
    return paths.data_dir(world.results, world.name, task) / "splits"


def split_file(world, task: str, split: str) -> Path:
    """A task split's JSONL: for worlds with a `tasks:` block (the paper's hub sources) the copy
    `kdtools data --task` fetched; otherwise the toy world's built file."""
    check_task(task)
    if task in world.tasks:
        path = splits_dir(world, task) / f"{split}.jsonl"
        if not path.is_file():
            raise KdError(f"{path} does not exist: run `kdtools --world {world.name} data --task {task}` "
                          "first (on a machine with hub access)")
        return path
    if not world.toy:
        raise KdError(f"world '{world.name}' has no tasks.{task} in {world.file}: add its train/dev/test "
                      "sources (see workflow/config/paper.yaml)")
    path = world.built_dir / "tasks" / task / f"{split}.jsonl"
    if not path.is_file():
        raise KdError(f"{path} does not exist: run `kdtools --world {world.name} toy` first")
    return path
