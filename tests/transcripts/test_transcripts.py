"""Every transcript in this folder, played against the server core and against a live
``mailward serve``: the same dialogue, the same replies (see runner.py for the format)."""

from __future__ import annotations

import pytest

from tests.conftest import tls_settings
from tests.transcripts.runner import (
    CorePeer,
    LivePeer,
    TranscriptError,
    all_transcripts,
    parse,
    play,
)

TRANSCRIPTS = all_transcripts()
IDS = [path.stem for path in TRANSCRIPTS]


def test_there_are_transcripts():
    assert len(TRANSCRIPTS) >= 10


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=IDS)
def test_against_the_core(path):
    transcript = parse(path)
    play(transcript, CorePeer(transcript))


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=IDS)
def test_against_a_live_server(path, make_mta, pki):
    transcript = parse(path)
    mta = make_mta(LivePeer.settings(transcript, tls_settings(pki)))
    peer = LivePeer(mta.host, mta.port, ca_file=str(pki.ca))
    try:
        play(transcript, peer)
    finally:
        peer.close()


# ---- the runner itself ------------------------------------------------------------------------

def write(tmp_path, text: str):
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    return parse(path)


def test_a_wrong_reply_names_the_transcript_line(tmp_path):
    t = write(tmp_path, "S~ 220 .*\nC: NOOP\nS: 250 2.0.0 Fine\n")
    with pytest.raises(AssertionError, match=r"t.txt:3 \(server core\): expected S: '250 2.0.0 Fine'"):
        play(t, CorePeer(t))


def test_a_reply_nobody_expected_fails(tmp_path):
    t = write(tmp_path, "S~ 220 .*\nC: NOOP\nC: NOOP\nS: 250 2.0.0 OK\n")
    with pytest.raises(AssertionError, match="replies nobody expected: \\['250 2.0.0 OK'\\]"):
        play(t, CorePeer(t))


def test_settings_and_escapes(tmp_path):
    t = write(tmp_path, "# c\n@ server.max_recipients = 2\n@ tls\n\nC= a\\r\\n\\0\\x41\\\\\nC: b\n-- closed\n")
    assert t.settings == {"server": {"max_recipients": 2}} and t.tls
    assert t.steps[0].data == b"a\r\n\x00A\\b\r\n"


def test_a_malformed_line_is_refused(tmp_path):
    with pytest.raises(TranscriptError, match="t.txt:1: a line starts with"):
        write(tmp_path, "C:NOOP\n")


def test_the_live_driver_fails_on_a_wrong_reply_too(tmp_path, make_mta):
    t = write(tmp_path, "S~ 220 .*\nC: NOOP\nS: 250 2.0.0 Fine\n")
    mta = make_mta(LivePeer.settings(t, None))
    peer = LivePeer(mta.host, mta.port)
    try:
        with pytest.raises(AssertionError, match=r"t.txt:3 \(live server\): expected S: '250 2.0.0 Fine'"):
            play(t, peer)
    finally:
        peer.close()
