"""``mercure rule-test`` and ``mercure study``: the router's commands.

``mercure rule-test SOURCE`` evaluates one rule (``--rule NAME``), an expression (``-e``), or
every configured rule against a DICOM file, a ``tags.json``, a series folder, or a series still
waiting in ``incoming/`` (by SeriesInstanceUID), and prints the result with the tags it used.
With all rules it also prints what the router would do with the series. The test itself is
:mod:`mercure.core.rules.ruletest`, which the web interface's rule tester uses too.

``mercure study list`` shows the studies being collected; ``mercure study complete UID``
completes them now (``--discard`` sends them to ``discard/`` instead).
"""

from __future__ import annotations

import argparse
import getpass
import sys
from datetime import UTC, datetime
from pathlib import Path

from mercure.core.config import LoadedConfig, load_config
from mercure.core.datafolder import DataFolder
from mercure.core.delivery import command_events
from mercure.core.errors import MercureError, TaskError
from mercure.core.logs import configure_logging
from mercure.core.operations import complete_study, studies_of
from mercure.core.rules import CompiledRule, RuleSyntaxError, SeriesTags, compile_rule
from mercure.core.rules.ruletest import (
    DecisionReport,
    RuleOutcome,
    SourceError,
    evaluate_rule,
    evaluate_rules,
    load_source_tags,
)
from mercure.router.studies import StudyStore


def register(
    subparsers: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
) -> None:
    """Add ``mercure rule-test`` and ``mercure study`` to the command line."""
    rule_test = subparsers.add_parser(
        "rule-test",
        parents=[common],
        help="evaluate rules against a DICOM file or a received series",
        description="Evaluate one rule, an expression, or all configured rules against the tags "
        "of SOURCE: a DICOM file, a tags.json, a series folder, or the SeriesInstanceUID of a "
        "series waiting in incoming/. Prints each result and the tags it used.",
    )
    rule_test.add_argument("source", help="DICOM file, tags.json, series folder or series UID")
    which = rule_test.add_mutually_exclusive_group()
    which.add_argument("--rule", metavar="NAME", help="a rule of the configuration")
    which.add_argument(
        "-e", "--expression", help="a rule expression, e.g. \"tags.Modality == 'CT'\""
    )
    rule_test.set_defaults(handler=cmd_rule_test)

    study = subparsers.add_parser("study", help="studies being collected (studies/)")
    commands = study.add_subparsers(dest="study_command", required=True, metavar="COMMAND")
    listing = commands.add_parser("list", parents=[common], help="list the studies collecting")
    listing.set_defaults(handler=cmd_study_list)
    complete = commands.add_parser(
        "complete", parents=[common], help="complete a collected study now"
    )
    complete.add_argument("study_uid", help="StudyInstanceUID")
    complete.add_argument("--rule", metavar="NAME", help="only the study collected for this rule")
    complete.add_argument(
        "--discard", action="store_true", help="send it to discard/ instead of its action"
    )
    complete.set_defaults(handler=cmd_study_complete)


# --- rule-test ----------------------------------------------------------------------------
def cmd_rule_test(args: argparse.Namespace) -> int:
    """Print what the rule(s) say about the source's tags; 0 if the (one) rule is true."""
    loaded: LoadedConfig | None = None
    if args.expression is None or not Path(args.source).exists():
        loaded = load_config(args.config)
    data_dir = loaded.config.data_dir if loaded is not None else None
    additional = loaded.config.router.additional_tags if loaded is not None else {}
    tags = SeriesTags(load_source_tags(args.source, data_dir, additional))
    if args.expression is not None or args.rule is not None:
        outcome = evaluate_rule(_one_rule(args, loaded), tags)
        print(render_outcome(outcome))
        return 0 if outcome.value else 1
    assert loaded is not None
    report = evaluate_rules(loaded.config, loaded.compiled_rules, tags)
    for rule in report.rules:
        print(f"{rule.name}: disabled" if rule.disabled else render_outcome(rule))
    print(render_decision(report.decision))
    return 0


def _one_rule(args: argparse.Namespace, loaded: LoadedConfig | None) -> CompiledRule:
    if args.expression is not None:
        try:
            return compile_rule(args.expression, name="expression")
        except RuleSyntaxError as exc:
            raise SourceError(str(exc)) from None
    assert loaded is not None
    rule = loaded.compiled_rules.get(args.rule)
    if rule is None:
        known = ", ".join(sorted(loaded.compiled_rules)) or "none"
        raise SourceError(f"no rule '{args.rule}' in {loaded.path} (rules: {known})")
    return rule


def render_outcome(outcome: RuleOutcome) -> str:
    """One rule's result, and the tags it read with their values."""
    lines = [f"{outcome.name}: {'true' if outcome.value else 'false'}    {outcome.source}"]
    for keyword, value in outcome.used:
        lines.append(f"    {keyword} = {value!r}")
    for keyword in outcome.missing:
        lines.append(f"    {keyword} is missing: the rule is false")
    if outcome.error:
        lines.append(f"    error: {outcome.error} (the rule counts as false)")
    return "\n".join(lines)


def render_decision(decision: DecisionReport) -> str:
    """What the router would do with a series with these tags."""
    if decision.discarded:
        return f"=> discard: {decision.reason}"
    parts = []
    if decision.route_rules:
        parts.append("route to " + ", ".join(decision.route_targets))
    for step in decision.processing:
        after = f", then to {', '.join(step.then_targets)}" if step.then_targets else ""
        parts.append(f"process with {' > '.join(step.modules)}{after} ({step.rule})")
    for name in decision.study_rules:
        parts.append(f"collect the study for '{name}'")
    for name in decision.notification_rules:
        parts.append(f"notify ({name})")
    return "=> " + "; ".join(parts)


# --- study --------------------------------------------------------------------------------
def cmd_study_list(args: argparse.Namespace) -> int:
    """List the studies being collected, with their series and age."""
    data = DataFolder(load_config(args.config).config.data_dir)
    store = StudyStore(data)
    now = datetime.now(UTC)
    names = store.names()
    for name in names:
        try:
            task = store.read(name)
        except TaskError as exc:
            print(f"{name}  damaged: {exc}")
            continue
        study = task.study
        if study is None:
            print(f"{name}  (no study part in task.json)")
            continue
        age = (now - study.creation_time).total_seconds()
        quiet = (now - study.last_receive_time).total_seconds()
        trigger: str = study.complete_trigger
        if study.retrieve_job is not None:
            trigger += f" (or the end of retrieve job {study.retrieve_job})"
        print(
            f"{name}  {len(study.received_series_uid)} series  {trigger}  "
            f"created {age:.0f} s ago, last series {quiet:.0f} s ago"
        )
    if not names:
        print("no studies are being collected")
    return 0


def cmd_study_complete(args: argparse.Namespace) -> int:
    """Complete the studies collected for a StudyInstanceUID now
    (:func:`mercure.core.operations.complete_study`)."""
    loaded = load_config(args.config)
    config = loaded.config
    configure_logging(config.logging.level, config.logging.format)
    data = DataFolder(config.data_dir)
    names = studies_of(data, args.study_uid, args.rule)
    if not names:
        print(f"no study {args.study_uid} is being collected", file=sys.stderr)
        return 1
    failed = 0
    reason = "completed by `mercure study complete`"
    user = f"{getpass.getuser()} (command line)"
    with command_events(config, "router") as events:
        for name in names:
            try:
                print(
                    complete_study(
                        data, name, events, user=user, discard=args.discard, reason=reason
                    )
                )
            except (MercureError, OSError) as exc:
                print(f"{name}: {exc}", file=sys.stderr)
                failed += 1
    return 1 if failed else 0
