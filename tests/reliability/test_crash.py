"""The short crash run: SIGKILL during receiving and delivery; nothing acknowledged is lost."""

from tests.reliability.crash import run


def test_kill_9_during_load_loses_nothing(tmp_path):
    result = run(messages=400, kills=6, workdir=tmp_path, clients=3, seed=7)
    assert result["acked"] == 400
    assert result["kills"] == 6
    assert result["lost"] == []
    assert result["leftover_incoming"] == 0
    assert result["duplicate_ratio"] < 0.01
