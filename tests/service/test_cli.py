"""The ``askstream`` command: ``ask`` against a running service, ``serve`` end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from askstream.testing import ServerProcess, free_port

from .conftest import CHINESE, SERVICE_ENV, StartService, llm_env

ASKSTREAM = [sys.executable, "-m", "askstream.cli"]


def run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*ASKSTREAM, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_ask_prints_the_answer_and_the_chat_id(demo: ServerProcess) -> None:
    result = run("ask", CHINESE, "--url", demo.url)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"You asked: “{CHINESE}”.")
    assert "ASKSTREAM_LLM_URL" in result.stdout
    assert result.stderr.startswith("chat: ")
    chat_id = result.stderr.split()[1]
    again = run("ask", "And again?", "--chat", chat_id, "--url", demo.url)
    assert again.returncode == 0, again.stderr
    assert "This chat has 2 earlier messages." in again.stdout


def test_ask_prints_the_servers_message_and_fails_on_an_error(demo: ServerProcess) -> None:
    result = run("ask", "hi", "--chat", "no-such-chat", "--url", demo.url)
    assert result.returncode == 1
    assert result.stderr.strip() == "askstream: error 404: no chat 'no-such-chat'"


def test_ask_fails_on_an_error_event(start_service: StartService, upstream: ServerProcess) -> None:
    service = start_service(**llm_env(upstream, "fake-fail"))
    result = run("ask", "fail me halfway", "--url", service.url)
    assert result.returncode == 1
    assert result.stdout.startswith("Echo: ")
    assert "askstream: error 502:" in result.stderr
    assert "failed mid-answer" in result.stderr


def test_ask_fails_when_nothing_listens() -> None:
    result = run("ask", "hi", "--url", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert "cannot reach" in result.stderr


def test_serve_prints_the_url_and_answers(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, **SERVICE_ENV}
    with subprocess.Popen(
        [*ASKSTREAM, "serve", "--port", str(port), "--data-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # printed once it listens
            assert line.startswith(f"askstream is running: open http://127.0.0.1:{port}/")
            result = run("ask", "served?", "--url", f"http://127.0.0.1:{port}")
            assert result.returncode == 0, result.stderr
            assert (tmp_path / "askstream.db").exists()
        finally:
            process.send_signal(signal.SIGTERM)
            # uvicorn shuts down, then ends by the signal it caught, as a server should.
            assert process.wait(10) in {0, -signal.SIGTERM}


def test_serve_refuses_a_bad_setting_with_exit_status_2() -> None:
    result = subprocess.run(
        [*ASKSTREAM, "serve", "--llm-url", "http://h/v1"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("ASKSTREAM_")},
    )
    assert result.returncode == 2
    assert "ASKSTREAM_LLM_MODEL" in result.stderr


def test_a_flag_that_does_not_parse_is_a_usage_error() -> None:
    result = run("serve", "--port", "eighty")
    assert result.returncode == 2
    assert "--port" in result.stderr
