"""The `monitor` command line (contract: CLI.md). User mistakes exit 2 with one line; bugs raise."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import Progress, TaskID
from sqlalchemy.exc import DBAPIError

from monitor import logs
from monitor.app import App
from monitor.cli_args import app_of, choose, day_or_today, parse_date
from monitor.cli_audit import audit_app
from monitor.cli_mail import coordinators_app, digest, outbox_app, say_delivered, waiting
from monitor.cli_ops import backup, restore
from monitor.cli_show import (
    emit_json,
    err,
    interaction_checks,
    out,
    progress_bar,
    show_ingest,
    show_plan_source,
    show_status,
    shown,
    table,
    write_csv,
)
from monitor.cli_web import serve, tokens_app, users_app
from monitor.db.errors import explain
from monitor.domain.errors import UserError
from monitor.domain.protocol import Phase
from monitor.ingest.files import detect
from monitor.logs import FORMATS, LEVELS
from monitor.services import daily, patients, runs, views
from monitor.services.cohort import enroll_cohort
from monitor.services.enroll_csv import read_enrollments
from monitor.services.flags import acknowledge
from monitor.services.ingest import ingest_file
from monitor.services.quarantine import replay
from monitor.workers import Stop, helpers, how_many

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="Longitudinal monitoring scheduler for patients on azathioprine.")
quarantine_app = typer.Typer(no_args_is_help=False, help="Records that could not be stored as results.")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(outbox_app, name="outbox")
app.add_typer(coordinators_app, name="coordinators")
app.add_typer(audit_app, name="audit")
app.command()(digest)
app.add_typer(users_app, name="users")
app.add_typer(tokens_app, name="tokens")
app.command()(serve)
app.command()(backup)
app.command()(restore)


#: The commands that may start a clinic's database; every other one refuses to create an empty one.
CREATES_A_DATABASE = frozenset({"init", "enroll", "demo", "restore"})

DateOpt = Annotated[str | None, typer.Option("--date", help="YYYY-MM-DD (default: today in the clinic)")]
LogFormatOpt = Annotated[str, typer.Option("--log-format", help="text or json: one line per event on stderr")]
LogLevelOpt = Annotated[str, typer.Option("--log-level", help="debug, info, warning or error")]


def configure_logs(fmt: str, level: str = "info") -> None:
    logs.configure(choose(fmt, "--log-format", *FORMATS), level)


@app.callback()
def root(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option("--config", help="Site settings TOML (or MONITOR_CONFIG)")] = None,
) -> None:
    a = app_of(ctx)  # made by main, which names its database if it fails
    a.config, a.may_create = config, ctx.invoked_subcommand in CREATES_A_DATABASE
    ctx.call_on_close(a.close)


@app.command()
def init(ctx: typer.Context) -> None:
    """Create or migrate the database; load and validate every protocol."""
    a = app_of(ctx)
    a.engine  # noqa: B018  (migrates)
    out.print(f"database ready: {a.engine.url.render_as_string(hide_password=True)}")
    classes = sum(1 for entry in a.library.drug_list.entries.values() if entry.members)
    out.print(f"drug list: {len(a.library.drug_list.entries) - classes} drugs, {classes} classes")
    for pid in a.library.ids():
        p = a.library.get(pid)
        out.print(f"protocol {p.id} {p.version}: {p.title}")


@app.command()
def enroll(
    ctx: typer.Context,
    mrn: Annotated[str | None, typer.Option(help="Medical record number")] = None,
    protocol: Annotated[str | None, typer.Option(help="Protocol id, e.g. aih-azathioprine")] = None,
    start: Annotated[str | None, typer.Option(help="Treatment start (day 0), YYYY-MM-DD")] = None,
    weight_kg: Annotated[float | None, typer.Option("--weight-kg")] = None,
    phase: Annotated[Phase, typer.Option(help="Phase at enrollment")] = Phase.INDUCTION,
    name: Annotated[str | None, typer.Option()] = None,
    dob: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    sex: Annotated[str | None, typer.Option(help="F, M or U")] = None,
    tpmt: Annotated[str | None, typer.Option(help="normal, intermediate, poor or unknown")] = None,
    nudt15: Annotated[str | None, typer.Option(help="normal, intermediate, poor or unknown")] = None,
    coordinator: Annotated[str | None, typer.Option(help="Nurse coordinator e-mail")] = None,
    site: Annotated[str | None, typer.Option()] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="Bulk: a cohort CSV (all rows or none)")] = None,
) -> None:
    """Enroll a patient, or a clinic's existing cohort with --csv."""
    a = app_of(ctx)
    today, now = a.today(), a.now()
    if csv_path is not None:
        enroll_csv(a, csv_path)
        return
    missing = [o for o, v in (("--mrn", mrn), ("--protocol", protocol), ("--start", start),
                              ("--weight-kg", weight_kg)) if v is None]
    if missing:
        raise UserError(f"enroll needs {', '.join(missing)} (or --csv FILE for a cohort)")
    assert mrn and protocol and start and weight_kg is not None
    req = patients.EnrollmentRequest(
        mrn=mrn, protocol=protocol, start_on=day_or_today(a, start, "--start"), weight_kg=weight_kg,
        phase=phase, name=name, dob=parse_date(dob, "--dob"), sex=sex, tpmt=tpmt, nudt15=nudt15,
        coordinator=coordinator, site=site)
    with a.session() as s:
        enrollment, created = patients.enroll(s, a.library, req, today=today, now=now, actor=a.actor,
                                              dates=a.settings.dates.range)
        s.commit()
    verb = "enrolled" if created else "already enrolled:"
    out.print(f"{verb} {mrn} in {enrollment.protocol_id} ({enrollment.phase} from {enrollment.start_on})")


def enroll_csv(a: App, path: Path) -> None:
    """Every row checked (and listed by line if bad), then all enrolled in one transaction."""
    started, today, now = time.perf_counter(), a.today(), a.now()
    with progress_bar("checking rows") as bar:
        task = bar.add_task("checking", total=None)
        rows = read_enrollments(path, a.library, today=today, dates=a.settings.dates.range,
                                progress=lambda done: bar.update(task, completed=done))
    with a.session() as s, progress_bar("enrolling") as bar:
        task = bar.add_task("enrolling", total=len(rows))
        report = enroll_cohort(s, a.library, rows, today=today, now=now, actor=a.actor,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
        s.commit()
    out.print(f"enrolled {report.enrolled} patients ({report.already_enrolled} already enrolled) and attached "
              f"{report.attached_results} held results from {path} in {time.perf_counter() - started:.1f} s")


@app.command()
def record(
    ctx: typer.Context,
    mrn: str,
    on: DateOpt = None,
    dose: Annotated[list[str] | None, typer.Option(help="drug=mg/day, e.g. azathioprine=100")] = None,
    weight_kg: Annotated[float | None, typer.Option("--weight-kg")] = None,
    med_start: Annotated[list[str] | None, typer.Option("--med-start", help="Drug started (generic/brand)")] = None,
    med_stop: Annotated[list[str] | None, typer.Option("--med-stop", help="Drug stopped (generic/brand)")] = None,
    tpmt: Annotated[str | None, typer.Option()] = None,
    nudt15: Annotated[str | None, typer.Option()] = None,
    unlisted: Annotated[bool, typer.Option(
        "--unlisted", help="Record a drug name the drug list does not know, as typed; its interactions are not checked")
    ] = False,
) -> None:
    """Record dated clinical events: doses, weight, drugs started and stopped, TPMT/NUDT15 results."""
    a = app_of(ctx)
    doses = []
    for item in dose or []:
        drug, sep, mg = item.partition("=")
        try:
            doses.append((drug.strip(), float(mg)))
        except ValueError:
            raise UserError(f"--dose {item!r} must look like azathioprine=100 (mg/day)") from None
        if not sep or not drug.strip():
            raise UserError(f"--dose {item!r} must look like azathioprine=100 (mg/day)")
    events = patients.Events(doses=tuple(doses), weight_kg=weight_kg, med_start=tuple(med_start or ()),
                             med_stop=tuple(med_stop or ()), tpmt=tpmt, nudt15=nudt15, unlisted=unlisted)
    with a.session() as s:
        lines = patients.record(s, a.library, mrn, events, on=day_or_today(a, on), today=a.today(), now=a.now(),
                                actor=a.actor, dates=a.settings.dates.range)
        s.commit()
    for line in lines:
        out.print(f"recorded {line}")


@app.command()
def phase(
    ctx: typer.Context,
    mrn: str,
    to: Annotated[Phase, typer.Option("--to", help="The new phase")],
    reason: Annotated[str, typer.Option(help="Why (kept in the audit trail)")],
    on: DateOpt = None,
    by: Annotated[str | None, typer.Option(help="Confirming clinician (default: your user name)")] = None,
) -> None:
    """A clinician confirms a phase change (e.g. withdrawal, reinduction)."""
    a = app_of(ctx)
    with a.session() as s:
        e = patients.change_phase(s, mrn, to, on=day_or_today(a, on), reason=reason, by=by or a.actor,
                                  today=a.today(), now=a.now(), dates=a.settings.dates.range)
        s.commit()
    out.print(f"{mrn} is in {e.phase} from {e.phase_since}")


@app.command()
def ingest(
    ctx: typer.Context,
    paths: Annotated[list[Path], typer.Argument(help="Lab files")],
    fmt: Annotated[str, typer.Option("--format", help="auto, csv, hl7 or fhir")] = "auto",
) -> None:
    """Ingest lab files: stored, duplicate, held and quarantined counts per file."""
    a = app_of(ctx)
    choose(fmt, "--format", "auto", "csv", "hl7", "fhir")
    accounted, critical = True, 0
    for path in paths:
        kind = fmt if fmt != "auto" else detect(path)
        with a.session() as s, progress_bar(path.name) as bar:
            task = bar.add_task(path.name, total=None)

            def advance(n: int, task: TaskID = task, bar: Progress = bar) -> None:
                bar.advance(task, n)

            report = ingest_file(s, kind, path, a.ingest_context(), progress=advance, actor=a.actor)
        accounted = show_ingest(str(path), report) and accounted
        critical += report.critical_flags
    if critical:  # their alerts now, not at the daemon's next minute (or the next `monitor run`)
        say_delivered(a.deliver(), waiting(a))
    if not accounted:
        raise typer.Exit(1)


@app.command()
def run(
    ctx: typer.Context,
    on: DateOpt = None,
    full: Annotated[bool, typer.Option("--full", help="Evaluate every enrollment, not only those due")] = False,
    workers: Annotated[int | None, typer.Option("--workers", min=0, max=64,
                                                help="Processes (default daemon.workers; 0: one per core)")] = None,
    log_format: Annotated[str | None, typer.Option(
        "--log-format", help="text or json: one line per event on stderr (default: warnings and errors)")] = None,
    log_level: LogLevelOpt = "info",
) -> None:
    """The daily cycle once for a local date, shared with any daemon working on it. Idempotent."""
    if log_format is not None:
        configure_logs(log_format, choose(log_level, "--log-level", *LEVELS))
    a = app_of(ctx)
    today = day_or_today(a, on)
    d = a.settings.daemon
    # SIGTERM, Ctrl-C: the batch in hand is committed and the claims released (not left to lapse).
    with Stop().installed() as stop, a.session() as s, progress_bar("evaluating") as bar:
        if full:
            runs.make_due(s, today=today)
            s.commit()
        count = how_many(d.workers if workers is None else workers, runs.due_count(s, today=today), d.batch_size)
        task = bar.add_task("evaluating", total=None)
        with helpers(count - 1, today, config=a.config, stop=stop) as started:
            report = daily.run_daily(s, a.library, today=today, now=a.now(), mail=a.mail, clock=a.now, actor=a.actor,
                                     retry_failed=True, batch=d.batch_size, lease=d.claim_lease, stop=stop.asked,
                                     progress=lambda done, total: bar.update(task, completed=done, total=total))
        if started and not report.stopped:  # the day's counts, over every process that worked on it
            report = daily.day_report(s, today=today)
    out.print(f"daily cycle {today}: {report.evaluated} evaluated, {report.failed} failed, "
              f"{report.rows_changed} plan rows changed, {report.flags_raised} new flags, "
              f"{report.flags_resolved} flags resolved, {report.held_expired} held results expired to quarantine")
    if not report.stopped:  # what the day queued (digests, alerts), sent now; a server that is down is no failure
        say_delivered(a.deliver(stop=stop.asked), waiting(a))
    if report.requeued:
        out.print(f"  {report.requeued} enrollments had new input while they were evaluated: evaluated again")
    if report.stopped:
        err.print(f"stopped by a signal after the batch in hand: {report.left} due enrollments are left to the "
                  "next run or a daemon", markup=False)
        raise typer.Exit(1)
    if report.left:
        out.print(f"  {report.left} due enrollments are being evaluated by another process (a daemon): "
                  "it completes the day; `monitor status` shows its progress")
    if report.failed:
        ids = ", ".join(map(str, report.failed_ids[:20])) + (" ..." if report.failed > 20 else "")
        err.print(f"{report.failed} enrollments could not be evaluated (enrollment ids {ids}; the error of each "
                  "is logged above); they are tried again at the next run", markup=False)
        raise typer.Exit(1)


@app.command()
def patient(
    ctx: typer.Context,
    mrn: str,
    fmt: Annotated[str, typer.Option("--format", help="text or json")] = "text",
    on: DateOpt = None,
) -> None:
    """One patient: phase, due draws, dose steps, open flags, proposals, medications, recent results."""
    a = app_of(ctx)
    choose(fmt, "--format", "text", "json")
    day = day_or_today(a, on)
    with a.session() as s:
        view = views.patient_view(s, a.library, mrn, today=day, now=a.now(), actor=a.actor)
    show_plan_source(view["daily_run"], day, caption=False)  # the plan is evaluated now; its flags are stored
    if fmt == "json":
        emit_json(view)
        return
    out.print(f"[bold]{view['mrn']}[/] {view['protocol']}: {view['phase']} since {view['phase_since']} "
              f"(as of {view['as_of']})")
    table("Overdue (latest required draw unmet)", ["panel", "since", "unmet", "last result", "why"],
          [[o["panel"], o["due_on"], o["draws_unmet"], o["last_result_on"] or "never", o["why"]]
           for o in view["overdue"]])
    table("Due draws", ["panel", "due", "status", "why"],
          [[d["panel"], d["due_on"], d["status"], d["why"]] for d in view["due"]])
    table("Dose steps", ["drug", "mg/day", "from", "status", "why"],
          [[d["drug"], f"{d['dose_mg']:g}", d["on"], d["status"], d["why"]] for d in view["dose_steps"]])
    table("Open flags (one line per problem)", ["id", "severity", "kind", "value", "observed", "results", "why"],
          [[f["id"], f["severity"], f["kind"], shown(f), f["observed_on"], f["results"], f["why"]]
           for f in views.by_problem(view["flags"])])
    table("Medications", ["drug", "started", "stopped", "interactions"],
          [[m["drug"], m["started_on"], m["stopped_on"], interaction_checks(m)] for m in view["medications"]])
    table("Results (last 12 months)", ["observed", "analyte", "value", "status", "CTCAE"],
          [[r["observed_on"], r["analyte"], f"{r['value']:g} {r['unit']}", r["status"], r["ctcae_grade"]]
           for r in view["results"][:30]])


@app.command()
def overdue(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
    on: DateOpt = None,
    site: Annotated[str | None, typer.Option()] = None,
    coordinator: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Every patient and panel whose latest required draw is unmet (missed included), worst first."""
    a = app_of(ctx)
    choose(fmt, "--format", "table", "csv", "json")
    day = day_or_today(a, on)
    with a.session() as s:
        rows = views.overdue(s, today=day, site=site, coordinator=coordinator)
        run = views.last_daily_run(s)
    show_plan_source(run, day, caption=fmt == "table")
    if fmt == "json":
        emit_json(rows)
    elif fmt == "csv":
        write_csv(rows, views.OVERDUE_COLUMNS)
    else:
        table(f"Overdue ({len(rows)})", ["mrn", "panel", "since", "days", "unmet", "last result", "phase",
                                          "coordinator", "site"],
              [[r["mrn"], r["panel"], r["due_on"], r["days_overdue"], r["draws_unmet"], r["last_result_on"] or "never",
                r["phase"], r["coordinator"], r["site"]] for r in rows])


@app.command()
def flags(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="open, acknowledged, resolved or all")] = "open",
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
) -> None:
    """The flag worklist, critical first."""
    a = app_of(ctx)
    choose(fmt, "--format", "table", "json")
    with a.session() as s:
        rows = views.flags(s, status=status)
        show_plan_source(views.last_daily_run(s), a.today(), caption=fmt == "table")
    if fmt == "json":
        emit_json(rows)
        return
    problems = views.by_problem(rows)  # one line per patient and problem (four high MCVs: one)
    table(f"Flags ({status}: {len(rows)}, {len(problems)} problems)",
          ["id", "mrn", "severity", "kind", "value", "observed", "results", "status"],
          [[f["id"], f["mrn"], f["severity"], f["kind"], shown(f), f["observed_on"],
            f["results"] if f["results"] == 1 else f"{f['results']} since {f['first_observed_on']}", f["status"]]
           for f in problems])


@app.command()
def override(
    ctx: typer.Context,
    mrn: str,
    rule: Annotated[str, typer.Option(help="Threshold id, e.g. bsr17/neutrophils-below-1.6")],
    reason: Annotated[str, typer.Option(help="Why this patient differs (e.g. benign ethnic neutropenia)")],
    below: Annotated[float | None, typer.Option(help="New lower cut point")] = None,
    above: Annotated[float | None, typer.Option(help="New upper cut point")] = None,
    by: Annotated[str | None, typer.Option(help="Clinician (default: your user name)")] = None,
) -> None:
    """Set a patient-specific threshold for one protocol rule, with the reason."""
    a = app_of(ctx)
    with a.session() as s:
        patients.set_override(s, a.library, mrn, rule, below=below, above=above, reason=reason, by=by or a.actor,
                              today=a.today(), now=a.now())
        s.commit()
    cut = f"below {below:g}" if below is not None else f"above {above or 0:g}"
    out.print(f"{mrn}: {rule} is now {cut} for this patient ({reason})")


@app.command()
def ack(
    ctx: typer.Context,
    flag_id: int,
    reason: Annotated[str, typer.Option(help="What was done")],
    by: Annotated[str | None, typer.Option(help="Who (default: your user name)")] = None,
) -> None:
    """Acknowledge a flag."""
    a = app_of(ctx)
    with a.session() as s:
        acknowledge(s, flag_id, reason=reason, by=by or a.actor, today=a.today(), now=a.now())
        s.commit()
    out.print(f"flag {flag_id} acknowledged")


@quarantine_app.callback(invoke_without_command=True)
def quarantine_default(ctx: typer.Context) -> None:
    if ctx.invoked_subcommand is None:
        ctx.invoke(quarantine_list, ctx=ctx)


@quarantine_app.command("list")
def quarantine_list(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="table or json")] = "table",
    status: Annotated[str, typer.Option(help="open or all")] = "open",
) -> None:
    """Quarantined records with their reasons."""
    a = app_of(ctx)
    choose(fmt, "--format", "table", "json")
    choose(status, "--status", "open", "all")
    with a.session() as s:
        rows = views.quarantine_list(s, status=status)
    if fmt == "json":
        emit_json(rows)
        return
    table(f"Quarantine ({status}: {len(rows)})", ["id", "origin", "status", "reason"],
          [[q["id"], q["origin"], q["status"], q["reason"]] for q in rows])


@quarantine_app.command("replay")
def quarantine_replay(ctx: typer.Context) -> None:
    """Try every open quarantined record again (after fixing a mapping or enrolling a patient)."""
    a = app_of(ctx)
    with a.session() as s, progress_bar("replaying") as bar:
        task = bar.add_task("replaying", total=None)
        report = replay(s, a.ingest_context(), actor=a.actor, now=a.now(),
                        progress=lambda done, total: bar.update(task, completed=done, total=total))
    out.print(f"replayed {report.replayed}; {report.still_quarantined} still quarantined")


@app.command()
def mllp(
    ctx: typer.Context,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default: setting mllp.host)")] = None,
    port: Annotated[int | None, typer.Option(help="TCP port (default: setting mllp.port; 0: any free port)")] = None,
    log_format: LogFormatOpt = "text",
) -> None:
    """HL7 v2 MLLP listener: stores each message, ingests it, then ACKs (AA, or AE/AR with the reason)."""
    import signal

    from monitor.feed import Feed, serve_forever

    configure_logs(log_format)
    a = app_of(ctx)
    a.engine  # noqa: B018  (migrate before listening)
    host = a.settings.mllp.host if host is None else host
    port = a.settings.mllp.port if port is None else port
    feed = Feed(a)
    if left := feed.reconcile():
        out.print(f"processed {left} messages an earlier run left unfinished")

    def started(bound: int) -> None:
        out.print(f"MLLP listening on {host}:{bound}; Ctrl-C or SIGTERM stops it")
        sys.stdout.flush()

    def stop_on(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

    serve_forever(feed, host, port, started=started, stop_on=stop_on)
    out.print("MLLP listener stopped")


@app.command()
def daemon(
    ctx: typer.Context,
    log_format: LogFormatOpt = "text",
    log_level: LogLevelOpt = "info",
) -> None:
    """Run unattended: the daily cycle every clinic day at daemon.run_at (caught up at start), a
    heartbeat every minute, the MLLP listener when mllp.enabled. SIGTERM stops it cleanly."""
    from monitor.daemon import Daemon

    configure_logs(log_format, choose(log_level, "--log-level", *LEVELS))
    a = app_of(ctx)
    a.engine  # noqa: B018  (migrate before anything starts)
    a.library  # noqa: B018  (protocol files valid, or exit 2 now)
    raise typer.Exit(Daemon(a).run())


@app.command()
def status(
    ctx: typer.Context,
    fmt: Annotated[str, typer.Option("--format", help="text or json")] = "text",
) -> None:
    """Is the daily cycle running every day and a daemon alive? Exit 1 when not (for cron, Nagios,
    a container health check)."""
    from monitor.services.status import report

    choose(fmt, "--format", "text", "json")
    a = app_of(ctx)
    with a.session() as s:
        view = report(s, now=a.now(), zone=a.settings.clinic.zone)
    try:
        emit_json(view) if fmt == "json" else show_status(view)
        sys.stdout.flush()
    except BrokenPipeError:  # `monitor status | head -1`: the reader left; the verdict still sets the exit code
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    if not view["healthy"]:
        raise typer.Exit(1)


@app.command()
def demo(
    ctx: typer.Context,
    directory: Annotated[Path, typer.Option("--dir", help="Where to put the demo")] = Path("monitor-demo"),
    n: Annotated[int, typer.Option("--patients", min=7, max=20000)] = 240,
    on: DateOpt = None,
) -> None:
    """Quick start: a synthetic cohort on a fresh SQLite file, the daily cycle, digests as .eml."""
    from monitor.demo import run_demo

    a = app_of(ctx)
    run_demo(a, directory, size=n, today=day_or_today(a, on), console=out)


def main(argv: list[str] | None = None) -> int:
    """The `monitor` entry point: user mistakes are one line on stderr and exit 2; so are text that
    is not UTF-8 and a database that cannot be opened or used (one that refuses a change: exit 1),
    never with its data; other bugs raise."""
    a = App()
    try:
        code = app(args=argv, prog_name="monitor", standalone_mode=False, obj=a)
    except UserError as e:
        err.print(f"monitor: error: {e}", markup=False)
        return 2
    except DBAPIError as e:
        problem = explain(e, a.settings.database.url)
        err.print(f"monitor: error: {problem.line}", markup=False)
        return problem.exit_code
    except UnicodeEncodeError as e:  # bytes the terminal could not decode, sent on to the database or stdout
        err.print(f"monitor: error: some text is not valid {e.encoding} ({e.reason}): type arguments as UTF-8 "
                  "text, in a UTF-8 terminal (e.g. LANG=C.UTF-8)", markup=False)
        return 2
    except typer.Abort:
        err.print("monitor: aborted", markup=False)
        return 1
    except typer.TyperException as e:  # a usage error found by the option parser
        message = e.format_message() if hasattr(e, "format_message") else str(e)
        err.print(f"monitor: error: {' '.join(message.split())} (see --help)", markup=False)
        return int(getattr(e, "exit_code", 2))
    return code if isinstance(code, int) else 0
