"""Redaction for display and plan files: table tests by field, by place and by value shape."""

from __future__ import annotations

import base64

import pytest

from omniport.planner.machineconfig.redact import SENSITIVE, redact, redact_text, redact_value

S = SENSITIVE
PEM_KEY = (
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEIBkg4LVWM9nuwNSk3yByxZpYRTBnVJk5\n"
    "-----END EC PRIVATE KEY-----\n"
)
PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIBPzCB8qADAgECAhEA\n-----END CERTIFICATE-----\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# (case, document, expected)
BY_FIELD_AND_PLACE = [
    (
        "inline manifest holding a Secret",
        {"cluster": {"inlineManifests": [{"name": "creds", "contents": "kind: Secret\n"}]}},
        {"cluster": {"inlineManifests": [{"name": "creds", "contents": S}]}},
    ),
    (
        "extra manifest headers",
        {"cluster": {"extraManifestHeaders": {"Authorization": "Bearer abc.def.ghi", "X-A": "1"}}},
        {"cluster": {"extraManifestHeaders": {"Authorization": S, "X-A": S}}},
    ),
    (
        "proxy with userinfo in machine.env",
        {"machine": {"env": {"https_proxy": "http://user:PASS@proxy:3128", "TZ": "UTC"}}},
        {"machine": {"env": {"https_proxy": f"http://{S}@proxy:3128", "TZ": "UTC"}}},
    ),
    (
        "a secret-named env key",
        {"machine": {"env": {"GITHUB_TOKEN": "ghp_x", "AWS_SECRET_ACCESS_KEY": "k"}}},
        {"machine": {"env": {"GITHUB_TOKEN": S, "AWS_SECRET_ACCESS_KEY": S}}},
    ),
    (
        "machine.files content",
        {"machine": {"files": [{"path": "/var/f", "content": "hello", "op": "create"}]}},
        {"machine": {"files": [{"path": "/var/f", "content": S, "op": "create"}]}},
    ),
    (
        "extension service config file (the lab's NUT monitor password)",
        {
            "kind": "ExtensionServiceConfig",
            "name": "nut-client",
            "configFiles": [
                {"content": "MONITOR ups@10.10.0.5 1 remote pw secondary\n", "mountPath": "/a"}
            ],
            "environment": ["NUT_UPS=ups", "NUT_PASSWORD=hunter2", "URL=https://u:p@h/x"],
        },
        {
            "kind": "ExtensionServiceConfig",
            "name": "nut-client",
            "configFiles": [{"content": S, "mountPath": "/a"}],
            "environment": ["NUT_UPS=ups", f"NUT_PASSWORD={S}", f"URL=https://{S}@h/x"],
        },
    ),
    (
        "registry auth and wireguard keys (field names)",
        {
            "machine": {
                "registries": {"config": {"r": {"auth": {"username": "u", "password": "p"}}}},
                "network": {"interfaces": [{"wireguard": {"privateKey": "k", "listenPort": 1}}]},
            }
        },
        {
            "machine": {
                "registries": {"config": {"r": {"auth": {"username": S, "password": S}}}},
                "network": {"interfaces": [{"wireguard": {"privateKey": S, "listenPort": 1}}]},
            }
        },
    ),
    (
        "apiserver OIDC client secret in extraArgs",
        {"cluster": {"apiServer": {"extraArgs": {"oidc-client-secret": "s", "v": "2"}}}},
        {"cluster": {"apiServer": {"extraArgs": {"oidc-client-secret": S, "v": "2"}}}},
    ),
    (
        "what is not secret stays",
        {
            "machine": {
                "network": {"hostname": "cp-1", "nameservers": ["1.1.1.1"]},
                "sysctls": {"vm.max_map_count": "262144"},
                "kubelet": {"extraArgs": {"max-pods": "250"}},
                "registries": {"mirrors": {"docker.io": {"endpoints": ["https://mirror"]}}},
                "install": {"extraKernelArgs": ["console=ttyS0"]},
            },
            "cluster": {"extraManifests": ["https://example.com/cni.yaml"]},
        },
        None,
    ),
]


@pytest.mark.parametrize(
    ("document", "expected"),
    [(doc, want) for _, doc, want in BY_FIELD_AND_PLACE],
    ids=[case for case, _, _ in BY_FIELD_AND_PLACE],
)
def test_redacts_by_field_and_place(document, expected):
    (out,) = redact([document])
    assert out.data == (document if expected is None else expected)


BY_SHAPE = [
    ("url userinfo", "git clone https://bob:s3cret@git.example.com/r", f"https://{S}@git.example"),
    ("token in query", "https://omni/?jointoken=abc&x=1", f"?jointoken={S}&x=1"),
    ("bearer", "Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig", f"Bearer {S}"),
    ("basic", "Authorization: Basic dXNlcjpwYXNz", f"Basic {S}"),
    ("assignment", "db_password=hunter2 other=1", f"db_password={S} other=1"),
    ("yaml assignment", "bootstrapToken: 'abc.def'", f"bootstrapToken: '{S}"),
    ("private pem in text", f"cert:\n{PEM_CERT}key:\n{PEM_KEY}", f"cert:\n{PEM_CERT}key:\n{S}"),
    ("base64 private pem", b64(PEM_KEY), S),
    ("base64 of a bearer header", b64("Authorization: Bearer abcdefgh12345"), S),
]


@pytest.mark.parametrize(
    ("text", "must_contain"),
    [(t, want) for _, t, want in BY_SHAPE],
    ids=[case for case, _, _ in BY_SHAPE],
)
def test_redacts_by_value_shape(text, must_contain):
    out = redact_text(text)
    assert must_contain in out
    assert out != text


@pytest.mark.parametrize(
    "text",
    [
        PEM_CERT,
        b64(PEM_CERT),  # Talos stores certificates base64: they are public
        "https://example.com/path?version=1",
        "cp-1.example.com",
        "token-ttl",
        "--rotate-server-certificates=true",
    ],
)
def test_leaves_public_values(text):
    assert redact_text(text) == text


def test_file_contents_shown_when_the_spec_asks():
    doc = {"machine": {"files": [{"content": "plain", "path": "/f"}]}}
    assert redact([doc], show_file_contents=True)[0].data == doc
    # secret shapes inside shown contents still go
    doc = {"machine": {"files": [{"content": "password=x1\n", "path": "/f"}]}}
    shown = redact([doc], show_file_contents=True)[0].data
    assert shown["machine"]["files"][0]["content"] == f"password={S}\n"


def test_redaction_is_idempotent():
    for _, doc, _ in BY_FIELD_AND_PLACE:
        once = redact([doc])[0].data
        assert redact([once])[0].data == once
    for _, text, _ in BY_SHAPE:
        assert redact_text(redact_text(text)) == redact_text(text)


def test_field_argument_still_names_the_holder():
    assert redact_value("x", "password") == S
    assert redact_value("x", "hostname") == "x"
