"""Sending reports end to end: a real NSD serving the _smtp._tls records, a real HTTPS
collector receiving the POSTs, report mail written into a real spool by `mailward tls-rpt
send` and delivered by a real `mailward serve` to a recording SMTP receiver; retries after a
failed POST or a DNS failure; each destination served once, across restarts."""

from __future__ import annotations

import asyncio
import email
import email.policy
import email.utils
import gzip
import json
import re
import smtplib
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from mailward.config import from_dict, load
from mailward.spool.store import Spool
from mailward.tlsrpt.results import is_report_envelope
from mailward.tlsrpt.send import ReportSender
from mailward.tlsrpt.store import TlsRptStore, day_start, utc_day
from mailward.tlsrpt.wiring import TlsRpt, build_sender, open_store
from rpt_schema import validate
from tests.conftest import MTA

STS = dict(policy_type="sts", policy_strings=["version: STSv1", "mode: enforce", "mx: *.rpt.test", "max_age: 86400"],
           mx_host="*.rpt.test")
YESTERDAY = utc_day(time.time() - 86400)
Y_WHEN = day_start(YESTERDAY) + 3600


def settings(world, **tls_rpt) -> dict:
    """send_hour 0: yesterday's reports are due whatever the hour the suite runs at (the
    default, 01:00 UTC, made every test here fail between 00:00 and 01:00)."""
    tls_rpt = {"send_hour": 0, **tls_rpt}
    return {"server": {"hostname": "mx.sender.test"},
            "spool": {"fsync": False},
            "delivery": {"resolver": [world.dns], "smtp_port": world.mx_port, "dns_timeout": 3.0,
                         "connect_timeout": 3.0, "command_timeout": 5.0},
            "tls_rpt": {"ca_file": str(world.ca), "http_timeout": 5.0, **tls_rpt}}


def record_day(store, domain: str, ok: int = 3, failed: int = 1, when: float = Y_WHEN) -> None:
    for _ in range(ok):
        store.record(policy_domain=domain, success=True, when=when, **STS)
    for _ in range(failed):
        store.record(policy_domain=domain, success=False, result_type="certificate-not-trusted",
                     sending_ip="127.0.0.1", receiving_mx_hostname=f"mx1.{domain}", receiving_ip="127.0.0.55",
                     when=when, **STS)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "mailward", "tls-rpt", "-c", str(config), *args],
                          capture_output=True, text=True, timeout=60)


def unzip_report(data: bytes) -> dict:
    report = json.loads(gzip.decompress(data))
    validate(report)
    return report


def check_report(report: dict, domain: str, ok: int = 3, failed: int = 1) -> None:
    assert report["organization-name"] == "mx.sender.test"
    assert report["contact-info"] == "postmaster@mx.sender.test"
    assert report["date-range"] == {"start-datetime": f"{YESTERDAY}T00:00:00Z",
                                    "end-datetime": f"{YESTERDAY}T23:59:59Z"}
    (entry,) = report["policies"]
    assert entry["policy"] == {"policy-type": "sts", "policy-string": STS["policy_strings"],
                               "policy-domain": domain, "mx-host": ["*.rpt.test"]}
    assert entry["summary"] == {"total-successful-session-count": ok, "total-failure-session-count": failed}
    assert entry["failure-details"] == [{"result-type": "certificate-not-trusted", "sending-mta-ip": "127.0.0.1",
                                         "receiving-mx-hostname": f"mx1.{domain}", "receiving-ip": "127.0.0.55",
                                         "failed-session-count": failed}]


def check_report_mail(raw: bytes, domain: str, recipients: list[str]) -> dict:
    """RFC 8460 §5.3's message; returns the attached report."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == domain
    assert msg["TLS-Report-Submitter"] == "mx.sender.test"
    assert email.utils.parseaddr(msg["From"])[1] == "postmaster@mx.sender.test"
    assert [a.strip() for a in msg["To"].split(",")] == recipients
    text, attachment = msg.get_payload()
    assert text.get_content_type() == "text/plain" and domain in text.get_content()
    assert attachment.get_content_type() == "application/tlsrpt+gzip"
    report = unzip_report(attachment.get_payload(decode=True))
    rid = report["report-id"]
    assert msg["Subject"] == f"Report Domain: {domain} Submitter: mx.sender.test Report-ID: <{rid}@mx.sender.test>"
    begin = int(datetime.strptime(YESTERDAY, "%Y-%m-%d").replace(tzinfo=timezone.utc).timestamp())
    assert attachment.get_filename() == f"mx.sender.test!{domain}!{begin}!{begin + 86399}!{rid}.json.gz"
    return report


def test_send_then_a_real_mailward_delivers_the_report_mail(world, tmp_path):
    base = tmp_path / "mta"
    base.mkdir()
    mta = MTA(base, settings(world, from_address="TLS reports <postmaster@mx.sender.test>"))
    cfg = load(mta.config)
    store = open_store(cfg)
    for domain in ("both", "mailonly", "httpsonly", "norecord", "tworecords", "badrecord"):
        record_day(store, f"{domain}.rpt.test")
    record_day(store, "both.rpt.test", when=time.time())       # today: not due
    store.close()
    before_both, before_https = len(world.collector.to("/v1/both")), len(world.collector.to("/v1/httpsonly"))

    shown = cli(mta.config, "report", "both.rpt.test", "--day", YESTERDAY)
    assert shown.returncode == 0, shown.stderr
    check_report(json.loads(shown.stdout), "both.rpt.test")

    sent = cli(mta.config, "send")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    out = sent.stdout
    https = f"https://reports.rpt.test:{world.https_port}"
    assert f"{YESTERDAY} both.rpt.test: sent {https}/v1/both: HTTP status 200" in out
    assert f"{YESTERDAY} httpsonly.rpt.test: sent {https}/v1/httpsonly: HTTP status 200" in out
    for domain in ("norecord", "tworecords", "badrecord"):
        assert f"{YESTERDAY} {domain}.rpt.test: no record: no usable TLSRPT record at _smtp._tls.{domain}.rpt.test" in out
    queued = dict(re.findall(r" (\S+\.rpt\.test): queued mailto:\S+ \(queue id (\w+)\)", out))
    assert set(queued) == {"both.rpt.test", "mailonly.rpt.test"}
    assert "report mail is in the queue; it is delivered when the server starts" in out

    # the POSTs: content type, gzip, schema, the counts
    for path, domain, before in (("/v1/both", "both.rpt.test", before_both),
                                 ("/v1/httpsonly", "httpsonly.rpt.test", before_https)):
        posts = world.collector.to(path)
        assert len(posts) == before + 1
        assert posts[-1].headers["content-type"] == "application/tlsrpt+gzip"
        check_report(unzip_report(posts[-1].body), domain)

    # the spool holds the report mail, marked as a report, with the §5.3 structure
    spool = Spool(cfg.spool.directory, fsync=False, format=cfg.spool.format)
    both = spool.load(queued["both.rpt.test"])
    assert is_report_envelope(both) and both.sender == "postmaster@mx.sender.test"
    assert [r.address for r in both.recipients] == ["tlsrpt@rua.rpt.test"]
    raw = b"".join(spool.content(both.queue_id))
    report = check_report_mail(raw, "both.rpt.test", ["tlsrpt@rua.rpt.test"])
    check_report(report, "both.rpt.test")
    assert report["report-id"] == unzip_report(world.collector.to("/v1/both")[-1].body)["report-id"]
    mailonly = spool.load(queued["mailonly.rpt.test"])
    assert [r.address for r in mailonly.recipients] == ["tls-reports+mail@rua.rpt.test"]   # %2B decoded

    # each report once: nothing is due any more; today's counts wait
    again = cli(mta.config, "send")
    assert (again.returncode, again.stdout) == (0, "no reports due\n")
    assert len(world.collector.to("/v1/both")) == before_both + 1
    show = cli(mta.config, "show")
    assert f"{YESTERDAY} both.rpt.test\n  report finished: sent to https://" in show.stdout
    assert f"{utc_day(time.time())} both.rpt.test\n  policy sts mx-host=*.rpt.test: successful 3, failed 1" in show.stdout

    # a real mailward delivers the queued reports like any mail
    mta.start()
    try:
        busy = cli(mta.config, "send")
        assert busy.returncode == 75 and busy.stderr == (
            f"mailward: the mailward server (pid {mta.proc.pid}) is running on {cfg.spool.directory} and sends "
            "due reports itself (from tls_rpt.send_hour, every tls_rpt.check_interval seconds); nothing was sent\n")
        deadline = time.time() + 20
        while time.time() < deadline and len(world.receiver.messages) < 2:
            time.sleep(0.1)
        got = {tuple(m.recipients): m for m in world.receiver.messages}
        assert set(got) >= {("tlsrpt@rua.rpt.test",), ("tls-reports+mail@rua.rpt.test",)}, mta.log_text()
        mail = got[("tlsrpt@rua.rpt.test",)]
        assert mail.sender == "postmaster@mx.sender.test"
        check_report(check_report_mail(mail.content, "both.rpt.test", ["tlsrpt@rua.rpt.test"]), "both.rpt.test")

        # loop avoidance (RFC 8460 §5.3): the report mail's sessions are not counted; an
        # ordinary message to the same domain is (once delivery records sessions)
        with smtplib.SMTP(mta.host, mta.port, timeout=10) as smtp:
            smtp.sendmail("someone@mx.test", ["user@rua.rpt.test"], b"Subject: hello\r\n\r\nhello\r\n")
        deadline = time.time() + 20
        while time.time() < deadline and not any(m.recipients == ["user@rua.rpt.test"]
                                                 for m in world.receiver.messages):
            time.sleep(0.1)
        assert any(m.recipients == ["user@rua.rpt.test"] for m in world.receiver.messages), mta.log_text()

        def sessions() -> int:
            counts = TlsRptStore.read_only(cfg.tls_rpt.state_dir or Path(cfg.spool.directory) / "tlsrpt")
            return sum(pc.successes + pc.failure_total
                       for pc in counts.domains(utc_day(time.time())).get("rua.rpt.test", {}).values())

        deadline = time.time() + 3
        while time.time() < deadline and sessions() == 0:
            time.sleep(0.1)
        assert sessions() <= 1, "a report message's session was counted"
    finally:
        mta.stop()


def sender_for(world, base: Path, **tls_rpt):
    cfg = from_dict(settings(world, **tls_rpt) | {"spool": {"directory": str(base / "spool"),
                                                                       "fsync": False}}, base / "mailward.toml")
    store = open_store(cfg)
    return cfg, store, build_sender(cfg, store, Spool(cfg.spool.directory, fsync=False, format=cfg.spool.format))


def test_failures_are_retried_and_each_destination_gets_the_report_once(world, tmp_path):
    world.collector.fail_first["/v1/flaky"] = 1
    cfg, store, sender = sender_for(world, tmp_path)
    for domain in ("flaky.rpt.test", "x.broken.rpt.test", "untrusted.rpt.test"):
        record_day(store, domain)

    first = {o.domain: o for o in asyncio.run(sender.send_due(ignore_retry_time=True))}
    assert (first["flaky.rpt.test"].status, first["flaky.rpt.test"].detail) == ("deferred", "HTTP status 503")
    assert first["x.broken.rpt.test"].status == "deferred" and first["x.broken.rpt.test"].detail.startswith(
        "DNS: Host name lookup failure for name=_smtp._tls.x.broken.rpt.test type=TXT")
    untrusted = first["untrusted.rpt.test"]
    assert untrusted.status == "deferred" and "Hostname mismatch" in untrusted.detail, untrusted.detail
    assert asyncio.run(sender.send_due()) == []          # not before tls_rpt.retry_interval

    second = {o.domain: o.status for o in asyncio.run(sender.send_due(ignore_retry_time=True))}
    assert second == {"flaky.rpt.test": "sent", "x.broken.rpt.test": "deferred", "untrusted.rpt.test": "deferred"}
    store.close()

    # after a restart: the flaky domain's report is not sent again, the others still wait
    cfg, store, sender = sender_for(world, tmp_path)
    third = {o.domain: o.status for o in asyncio.run(sender.send_due())}
    assert third == {"x.broken.rpt.test": "deferred", "untrusted.rpt.test": "deferred"}
    store.close()
    posts = world.collector.to("/v1/flaky")
    assert len(posts) == 2 and json.loads(gzip.decompress(posts[0].body)) == json.loads(gzip.decompress(posts[1].body))


def test_a_destination_served_is_not_served_again_when_another_fails(world, tmp_path):
    """mailto: queued, https: refused: the retry POSTs again but queues no second mail."""
    cfg, store, sender = sender_for(world, tmp_path)
    record_day(store, "both.rpt.test", ok=9, failed=0)
    world.collector.fail_first["/v1/both"] = 1
    first = sorted((o.status, o.rua.split(":")[0]) for o in asyncio.run(sender.send_due()))
    assert first == [("deferred", "https"), ("queued", "mailto")]
    second = [(o.status, o.rua.split(":")[0]) for o in asyncio.run(sender.send_due(ignore_retry_time=True))]
    assert second == [("sent", "https")]
    assert len(Spool(cfg.spool.directory, fsync=False, format=cfg.spool.format).ids()) == 1
    assert store.due() == []
    store.close()


def test_the_server_task_sends_due_reports(world, tmp_path):
    """TlsRpt as the composition root runs it: start() in the event loop, poke(), stop()."""
    cfg = from_dict(settings(world, check_interval=60.0) | {"spool": {"directory": str(tmp_path / "spool"),
                                                                        "fsync": False}}, tmp_path / "mailward.toml")
    spool = Spool(cfg.spool.directory, fsync=False, format=cfg.spool.format)
    queued: list[str] = []

    async def run():
        tlsrpt = TlsRpt.from_config(cfg, spool)
        tlsrpt.on_queued = queued.append
        record_day(tlsrpt.recorder, "periodic.rpt.test")
        record_day(tlsrpt.recorder, "mailonly.rpt.test")
        tlsrpt.start()
        deadline = time.time() + 15
        while time.time() < deadline and tlsrpt.recorder.due():    # both reports finished
            await asyncio.sleep(0.05)
        tlsrpt.recorder.record(policy_domain="periodic.rpt.test", policy_type="no-policy-found", success=True)
        await tlsrpt.stop()
        return tlsrpt

    tlsrpt = asyncio.run(run())
    assert isinstance(tlsrpt.sender, ReportSender)
    check_report(unzip_report(world.collector.to("/v1/periodic")[-1].body), "periodic.rpt.test")
    assert queued == spool.ids()
    reopened = open_store(cfg)
    assert reopened.days() == [utc_day(time.time())] and reopened.due() == []
    reopened.close()


def test_a_stop_lets_the_report_at_hand_finish(world, tmp_path):
    """A shutdown while a POST waits for its answer: the report is marked sent, not sent again."""
    world.collector.delay["/v1/slow"] = 1.0
    cfg, store, _ = sender_for(world, tmp_path)
    record_day(store, "slow.rpt.test")

    async def run():
        tlsrpt = TlsRpt.from_config(cfg, Spool(cfg.spool.directory, fsync=False, format=cfg.spool.format), store=store)
        tlsrpt.start()
        deadline = time.time() + 10
        while time.time() < deadline and not world.collector.to("/v1/slow"):
            await asyncio.sleep(0.02)
        await tlsrpt.stop()          # the answer is still a second away

    asyncio.run(run())
    reopened = open_store(cfg)
    assert reopened.due() == [] and reopened.sent_to(YESTERDAY, "slow.rpt.test") >= {"*"}
    reopened.close()
    assert len(world.collector.to("/v1/slow")) == 1


def test_the_delivery_side_store_is_shared(world, tmp_path):
    """One writable store per folder and process: the service passes delivery's to TlsRpt."""
    cfg, store, _ = sender_for(world, tmp_path)
    tlsrpt = TlsRpt.from_config(cfg, Spool(cfg.spool.directory, fsync=False, format=cfg.spool.format), store=store)
    assert tlsrpt.recorder is store and tlsrpt.sender.store is store
    asyncio.run(tlsrpt.stop())


def _service_wired() -> bool:
    """Has the composition root wired TlsRpt in (mailward/service/serve.py and master.py)?"""
    import inspect

    import mailward.service.master
    import mailward.service.serve
    return all("TlsRpt" in inspect.getsource(m) for m in (mailward.service.serve, mailward.service.master))


@pytest.mark.skipif(not _service_wired(), reason="the service does not start TlsRpt yet (docs/tls-rpt.md, API)")
@pytest.mark.parametrize("workers", [1, 2])
def test_a_running_server_sends_due_reports_by_itself(world, tmp_path, workers):
    """`mailward serve` (one process, or a master and workers) sends yesterday's reports on
    its own: the https: POST, and the mailto: report through its queue to the receiver."""
    base = tmp_path / "mta"
    base.mkdir()
    conf = settings(world)
    conf["server"]["workers"] = workers
    mta = MTA(base, conf)
    store = open_store(load(mta.config))
    record_day(store, "periodic.rpt.test", ok=workers)
    record_day(store, "mailonly.rpt.test", ok=10 + workers)
    store.close()
    posts, mails = len(world.collector.to("/v1/periodic")), len(world.receiver.messages)
    mta.start()
    try:
        deadline = time.time() + 20
        while time.time() < deadline and (len(world.collector.to("/v1/periodic")) == posts
                                           or len(world.receiver.messages) == mails):
            time.sleep(0.1)
        check_report(unzip_report(world.collector.to("/v1/periodic")[-1].body), "periodic.rpt.test", ok=workers)
        mail = world.receiver.messages[-1]
        report = check_report_mail(mail.content, "mailonly.rpt.test", ["tls-reports+mail@rua.rpt.test"])
        check_report(report, "mailonly.rpt.test", ok=10 + workers)
    finally:
        mta.stop()
    log = mta.log_text()
    assert "tlsrpt=sent, day=" in log and "tlsrpt=queued, day=" in log and "daemon=stopped" in log


def test_disabled_records_nothing(tmp_path):
    cfg = from_dict({"tls_rpt": {"enabled": False}, "spool": {"directory": str(tmp_path / "spool")}})
    tlsrpt = TlsRpt.from_config(cfg, None)
    tlsrpt.recorder.record(policy_domain="x.test", policy_type="sts", success=True)
    asyncio.run(tlsrpt.stop())
    assert tlsrpt.sender is None and not (tmp_path / "spool" / "tlsrpt").exists()
