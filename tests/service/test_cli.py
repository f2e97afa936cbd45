"""The ``askstream`` command: ``ask`` against a running service, ``serve`` end to end."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from askstream.testing import ServerProcess, free_port

from .bearer_app import TOKEN
from .conftest import CHINESE, SERVICE_ENV, StartService, llm_env

ASKSTREAM = [sys.executable, "-m", "askstream.cli"]


@pytest.fixture(autouse=True)
def own_state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``ask`` keeps its session cookies in a folder of this test's own, never the
    developer's, and no developer's token leaks in."""
    monkeypatch.setenv("ASKSTREAM_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("ASKSTREAM_TOKEN", raising=False)


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


def test_ask_keeps_its_session_so_another_user_cannot_go_on_with_the_chat(
    demo: ServerProcess, tmp_path: Path
) -> None:
    first = run("ask", "mine", "--url", demo.url)
    chat_id = first.stderr.split()[1]
    state = tmp_path / "state" / "sessions.json"
    assert state.stat().st_mode & 0o077 == 0
    assert demo.url in state.read_text()
    # Another user (no session kept) is a stranger to that chat: the same 404 as for none.
    os.environ["ASKSTREAM_STATE_DIR"] = str(tmp_path / "elsewhere")
    stranger = run("ask", "theirs?", "--chat", chat_id, "--url", demo.url)
    assert stranger.returncode == 1
    assert stranger.stderr.strip() == f"askstream: error 404: no chat {chat_id!r}"


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


# Tokens -----------------------------------------------------------------------
# Against tests/service/bearer_app.py, a stand-in that speaks the service's token
# rule; test_ask_with_a_token_against_the_service below is the real service's turn.


@pytest.fixture(scope="module")
def bearer() -> Iterator[ServerProcess]:
    with ServerProcess("tests.service.bearer_app:app") as server:
        yield server


def run_env(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k != "ASKSTREAM_TOKEN"}
    return subprocess.run(
        [*ASKSTREAM, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**base, **env},
    )


@pytest.mark.parametrize(
    ("args", "env"),
    [
        (["--token", TOKEN], {}),
        ([], {"ASKSTREAM_TOKEN": TOKEN}),
        (["--token", TOKEN], {"ASKSTREAM_TOKEN": "stale"}),  # the flag wins
    ],
    ids=["flag", "variable", "flag-over-variable"],
)
def test_ask_sends_the_token_on_the_request_and_its_resume(
    bearer: ServerProcess, args: list[str], env: dict[str, str]
) -> None:
    result = run_env("ask", "hi", "--chat", "c7", "--url", bearer.url, *args, **env)
    assert result.returncode == 0, result.stderr
    # The second half comes only from the resume at Content-Location, which needs the token.
    assert result.stdout == "Hello, token holder.\n"
    assert result.stderr == "chat: c7\n"


def test_ask_without_a_token_prints_the_message_and_how_to_pass_one(
    bearer: ServerProcess,
) -> None:
    result = run_env("ask", "hi", "--url", bearer.url)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "askstream: error 401: a bearer token is required",
        "askstream: the service needs a token: pass --token TOKEN or set ASKSTREAM_TOKEN",
    ]


@pytest.mark.parametrize("how", ["flag", "variable"])
def test_ask_with_a_wrong_token_says_which_to_check(bearer: ServerProcess, how: str) -> None:
    if how == "flag":
        result = run_env("ask", "hi", "--url", bearer.url, "--token", "wrong")
    else:
        result = run_env("ask", "hi", "--url", bearer.url, ASKSTREAM_TOKEN="wrong")
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "askstream: error 401: a valid bearer token is required",
        "askstream: the service refused this token: check --token or ASKSTREAM_TOKEN",
    ]


def test_a_token_that_cannot_be_a_header_is_a_usage_error(bearer: ServerProcess) -> None:
    result = run_env("ask", "hi", "--url", bearer.url, "--token", "two words")
    assert result.returncode == 2
    assert "--token / ASKSTREAM_TOKEN" in result.stderr


def test_the_token_stays_out_of_the_help() -> None:
    result = run_env("ask", "--help", ASKSTREAM_TOKEN="s3cret-token")
    assert result.returncode == 0
    assert "--token" in result.stdout
    assert "s3cret-token" not in result.stdout


def test_ask_with_a_token_against_the_service(start_service: StartService) -> None:
    service = start_service(ASKSTREAM_TOKENS=f"alice:{TOKEN}")
    refused = run_env("ask", "hi", "--url", service.url)
    assert refused.returncode == 1
    assert "askstream: error 401:" in refused.stderr
    assert "pass --token TOKEN or set ASKSTREAM_TOKEN" in refused.stderr
    answered = run_env("ask", "hi", "--url", service.url, "--token", TOKEN)
    assert answered.returncode == 0, answered.stderr
    assert answered.stderr.startswith("chat: ")


def test_ask_whose_reader_leaves_stops_quietly(start_service: StartService) -> None:
    # `askstream ask ... | head -c 10`: the pipe closes while the answer streams
    # (a word every 50 ms: for seconds).
    service = start_service(ASKSTREAM_DEMO_DELAY="0.05")
    process = subprocess.Popen(
        [*ASKSTREAM, "ask", "a long question for a long answer", "--url", service.url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    assert process.stdout.read(10)
    process.stdout.close()
    assert process.wait(timeout=30) == 141
    assert b"Traceback" not in process.stderr.read()
    process.stderr.close()


# Settings at start (docs/configuration.md) ----------------------------------------


def serve_in(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``askstream serve`` run in ``folder`` (where its .env is), with only ``env``'s
    ASKSTREAM_* and OPENAI_* variables."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ASKSTREAM_", "OPENAI_"))}
    return subprocess.run(
        [*ASKSTREAM, "serve", *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        cwd=folder,
        env={**base, **env},
    )


def test_serve_lists_every_wrong_setting_at_once_without_secrets(tmp_path: Path) -> None:
    secret = "never-shown-0123456789"
    (tmp_path / "key").write_text(f"{secret} and a space\n", encoding="utf-8")
    (tmp_path / ".env").write_text(
        "ASKSTREAM_HEARTBEAT=-1\nASKSTREAM_LLM_API_KEY_FILE=key\n", encoding="utf-8"
    )
    result = serve_in(
        tmp_path,
        "--max-body-size",
        "0",
        ASKSTREAM_PORT="eighty",
        ASKSTREAM_TOKENS=f"alice:{secret},bob:{secret}",
    )
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert lines[0] == "askstream: 5 settings are wrong:"
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "ASKSTREAM_PORT",
        "ASKSTREAM_LLM_API_KEY_FILE in .env",
        "--max-body-size",
        "ASKSTREAM_HEARTBEAT in .env",
        "ASKSTREAM_TOKENS",
    ]
    assert secret not in result.stderr
    assert not result.stdout


def test_serve_reads_the_env_file_of_its_working_directory(tmp_path: Path) -> None:
    port = free_port()
    data = tmp_path / "data"
    (tmp_path / ".env").write_text(
        f"ASKSTREAM_PORT={port}\nASKSTREAM_DATA_DIR={data}\nASKSTREAM_LOG_LEVEL=warning\n",
        encoding="utf-8",
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASKSTREAM_")}
    with subprocess.Popen(
        [*ASKSTREAM, "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=tmp_path,
        env=base,
    ) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()  # printed once it listens
            assert line.startswith(f"askstream is running: open http://127.0.0.1:{port}/")
            assert (data / "askstream.db").exists()
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(10) in {0, -signal.SIGTERM}


def test_db_upgrade_reads_the_env_file_it_is_given(tmp_path: Path) -> None:
    env_file = tmp_path / "deploy.env"
    env_file.write_text(f"ASKSTREAM_DATA_DIR={tmp_path / 'db'}\n", encoding="utf-8")
    (tmp_path / "db").mkdir()
    base = {k: v for k, v in os.environ.items() if not k.startswith("ASKSTREAM_")}
    result = subprocess.run(
        [*ASKSTREAM, "db", "upgrade", "--env-file", str(env_file)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=base,
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "db" / "askstream.db").exists()
