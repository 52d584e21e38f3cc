"""Settings: every section validated when loaded, secrets never printed (issue 12 item 7)."""

from __future__ import annotations

import pytest

from monitor.config import load_settings
from monitor.domain.errors import UserError


def test_secrets_in_settings_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    # smtp.password and web.secret_key are secret types: printing the settings (a log line, an error, `repr`
    # in a traceback) shows asterisks only.
    monkeypatch.setenv("MONITOR_SMTP__PASSWORD", "hunter2-smtp")
    monkeypatch.setenv("MONITOR_WEB__SECRET_KEY", "hunter2-web")
    settings = load_settings()
    assert "hunter2" not in f"{settings} {settings!r} {settings.smtp} {settings.web}"
    assert settings.smtp.password.get_secret_value() == "hunter2-smtp"
    assert settings.web.secret_key.get_secret_value() == "hunter2-web"


@pytest.mark.parametrize(("variable", "value", "key"), [
    pytest.param("MONITOR_DAEMON__RUN_AT", "25:00", "daemon.run_at", id="a daemon run time that is not HH:MM"),
    pytest.param("MONITOR_SMTP__SECURITY", "tls", "smtp.security", id="an SMTP security mode that does not exist"),
    pytest.param("MONITOR_SMTP__PORT", "twenty-five", "smtp.port", id="an SMTP port that is not a number"),
    pytest.param("MONITOR_MLLP__PORT", "x", "mllp.port", id="an MLLP port that is not a number"),
])
def test_every_section_is_checked_when_settings_load_before_its_feature_reads_it(
        monkeypatch: pytest.MonkeyPatch, variable: str, value: str, key: str) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(UserError, match=rf"^setting {key}: .*\(or set {variable}\)$"):
        load_settings()
