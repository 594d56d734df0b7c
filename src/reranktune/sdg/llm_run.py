"""Run the LLM generator over all units: preflight, resume, concurrency, progress, summary."""

from __future__ import annotations

import logging
import os
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path

from tqdm.auto import tqdm

from reranktune.documents import Document, ReadReport
from reranktune.io import InputError, write_json, write_jsonl
from reranktune.params import LlmParams
from reranktune.sdg.checkpoint import Checkpoint, checkpoint_path
from reranktune.sdg.llm import LlmGenerator, Unit, make_units
from reranktune.sdg.llm_client import (
    AuthError,
    LlmClient,
    LlmError,
    RequestRejected,
    TransientError,
)

log = logging.getLogger(__name__)
STAT_KEYS = (
    "sections",
    "pairs_generated",
    "pairs_bad_segment_ids",
    "pairs_duplicate",
    "pairs_unjudged",
    "pairs_kept",
)


def api_key(params: LlmParams, pending: int, total: int) -> str | None:
    """The key from the environment, or a clear stop before any call when it is missing."""
    if not params.api_key_env:
        return None
    key = os.environ.get(params.api_key_env, "").strip()
    if not key:
        raise InputError(
            f"sdg.llm.api_key_env: environment variable {params.api_key_env} is not set "
            f"(needed for {params.base_url}); {total - pending} of {total} documents done, "
            f"{pending} to go. "
            "Set it, or set sdg.llm.api_key_env: null for an endpoint without a key."
        )
    return key


def _entry(unit: Unit, result) -> dict:
    return {
        "key": unit.key,
        "files": [d.path for d in unit.documents],
        "record": result.record,
        "stats": result.stats,
        "failures": result.failures,
    }


def run_llm_sdg(
    params: LlmParams,
    documents: list[Document],
    read_report: ReadReport,
    output_path: str | Path,
    summary_path: str | Path,
) -> dict:
    units = make_units(documents, params)
    checkpoint = Checkpoint(checkpoint_path(output_path))
    saved = checkpoint.load()
    done: dict[str, dict] = {u.key: saved[u.key] for u in units if u.key in saved}
    pending = [u for u in units if u.key not in done]
    restored = len(done)
    if restored:
        log.info("sdg: %d of %d documents restored from %s", restored, len(units), checkpoint.path)

    calls: Counter = Counter()
    failed: list[dict] = []
    if pending:
        key = api_key(params, len(pending), len(units))
        client = LlmClient(params, key)
        try:
            generator = LlmGenerator(params, client)
            _preflight(client, params, len(pending), len(units))
            _run_pending(generator, client, pending, done, checkpoint, len(units), failed)
        finally:
            calls = client.usage.counts
            client.close()

    entries = [done[u.key] for u in units if u.key in done]
    summary = _summary(read_report, params, units, entries, restored, failed, calls, documents)
    write_json(summary_path, summary)
    if failed:
        raise InputError(
            f"sdg: {len(failed)} of {len(units)} documents failed "
            f"after {params.max_retries} retries "
            f"(first: {failed[0]['files']}: {failed[0]['error']}); {len(entries)} done are kept in "
            f"{checkpoint.path}. Run the stage again to resume; see {summary_path}."
        )
    write_jsonl(output_path, (e["record"] for e in entries))
    checkpoint.compact(entries)
    log.info(
        "sdg: %d documents, %d Q&A pairs kept -> %s", len(entries), summary["qa_pairs"], output_path
    )
    return summary


def _preflight(client: LlmClient, params: LlmParams, pending: int, total: int) -> None:
    status = f"{total - pending} of {total} documents done, {pending} to go"
    try:
        client.preflight()
    except AuthError as exc:
        raise InputError(
            f"sdg.llm: {exc} (key from ${params.api_key_env}); stopped before any work; {status}"
        ) from None
    except (RequestRejected, TransientError) as exc:
        raise InputError(
            f"sdg.llm: preflight call to {params.base_url} failed: {exc}; {status}"
        ) from None


def _run_pending(
    generator: LlmGenerator,
    client: LlmClient,
    pending: list[Unit],
    done: dict[str, dict],
    checkpoint: Checkpoint,
    total: int,
    failed: list[dict],
) -> None:
    kept = sum(e["stats"].get("pairs_kept", 0) for e in done.values())
    auth_error: AuthError | None = None
    bar = tqdm(total=total, initial=len(done), desc="sdg llm", unit="doc")
    bar.set_postfix(pairs=kept, failed=0)
    with ThreadPoolExecutor(
        max_workers=generator.params.concurrency, thread_name_prefix="sdg"
    ) as pool:
        futures = {pool.submit(generator.generate, unit): unit for unit in pending}
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, return_when=FIRST_COMPLETED)
            for future in finished:
                unit = futures[future]
                if future.cancelled():
                    continue
                try:
                    result = future.result()
                except AuthError as exc:
                    auth_error = auth_error or exc
                    for other in remaining:
                        other.cancel()
                    continue
                except LlmError as exc:
                    failed.append({"files": [d.path for d in unit.documents], "error": str(exc)})
                    bar.set_postfix(pairs=kept, failed=len(failed))
                    continue
                entry = _entry(unit, result)
                checkpoint.append(entry)
                done[unit.key] = entry
                kept += result.stats["pairs_kept"]
                for failure in result.failures:
                    log.warning("%s: step dropped: %s", entry["files"], failure)
                bar.update(1)
                bar.set_postfix(pairs=kept, failed=len(failed))
    bar.close()
    if auth_error:
        raise InputError(
            f"sdg.llm: {client.auth_error or auth_error} "
            f"(key from ${generator.params.api_key_env}); stopped. "
            f"{len(done)} of {total} documents done and kept in {checkpoint.path}; "
            "fix the key and run again to resume."
        )


def _summary(
    read_report: ReadReport,
    params: LlmParams,
    units: list[Unit],
    entries: list[dict],
    restored: int,
    failed: list[dict],
    calls: Counter,
    documents: list[Document],
) -> dict:
    stats: Counter = Counter()
    step_failures: Counter = Counter()
    units_with_failures = 0
    for entry in entries:
        stats.update({k: entry["stats"].get(k, 0) for k in STAT_KEYS})
        for failure in entry["failures"]:
            step_failures[failure.split(":", 1)[0]] += 1
        units_with_failures += bool(entry["failures"])
    return {
        **read_report.as_dict(),
        "generator": "llm",
        "model": params.model,
        "step_models": dict(params.step_models),
        "multi_doc": params.multi_doc,
        "units": len(units),
        "units_done": len(entries),
        "units_restored": restored,
        "units_failed": len(failed),
        "units_with_dropped_steps": units_with_failures,
        "qa_pairs": stats["pairs_kept"],
        **{k: stats[k] for k in STAT_KEYS if k != "pairs_kept"},
        "step_failures": {s: step_failures[s] for s in ("artifacts", "qa", "dedup", "judge")},
        "failed_units": failed[:50],
        "calls_this_run": dict(sorted(calls.items())),
        "chunks": sum(len(d.chunks) for d in documents),
    }
