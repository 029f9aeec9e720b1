"""The syntax rules of the Onload CR's fields, shared by the pydantic models and the CRD.

Each rule is a regular expression written in the common subset of Go's ``regexp`` (which the API server uses for
OpenAPI ``pattern`` and CEL ``matches``) and the Rust/Python engines that pydantic uses, so the CRD and the models
refuse the same values. What a pattern cannot say (a path inside a protected host directory, the length of a label
key's prefix) is a CEL rule in the CRD where its cost is bounded, and a check in the models in every case.
"""

from __future__ import annotations

import re

import re2

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
_DNS_SUBDOMAIN = rf"{_DNS_LABEL}(\.{_DNS_LABEL})*"

LABEL_VALUE_PATTERN = rf"^({_LABEL_NAME})?$"
"""A Kubernetes label value: at most 63 characters of letters, digits, '-', '_' and '.', alphanumeric at both ends."""

LABEL_KEY_PATTERN = rf"^({_DNS_SUBDOMAIN}/)?{_LABEL_NAME}$"
"""A label key: an optional DNS-subdomain prefix (at most 253 characters) and '/', then a name of at most 63."""

SERVICE_ACCOUNT_PATTERN = rf"^({_DNS_SUBDOMAIN})?$"
"""A DNS subdomain, or empty for the namespace's default service account (as the Go CRD allows)."""

_DOMAIN_COMPONENT = r"([A-Za-z0-9]|[A-Za-z0-9][-A-Za-z0-9]*[A-Za-z0-9])"
_PATH_COMPONENT = r"[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*"
_TAG_CHARACTER = r"([A-Za-z0-9_.-]|\$\{[A-Za-z_][A-Za-z0-9_]*\})"
IMAGE_PATTERN = (
    rf"^({_DOMAIN_COMPONENT}(\.{_DOMAIN_COMPONENT})*(:[0-9]+)?/)?{_PATH_COMPONENT}(/{_PATH_COMPONENT})*"
    rf"(:([A-Za-z0-9_]|\$\{{[A-Za-z_][A-Za-z0-9_]*\}}){_TAG_CHARACTER}{{0,127}})?"
    r"(@[A-Za-z][A-Za-z0-9]*([-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
"""An image reference (``[registry[:port]/]path[:tag][@digest]``); a tag may hold KMM's ``${VARIABLE}``s."""

_PATH_PART = r"([^/\s.][^/\s]*|\.[^/\s.][^/\s]*|\.\.[^/\s]+)"
"""One path component: no whitespace or '/', and not '.' or '..'."""

MOUNT_PATH_PATTERN = rf"^/?({_PATH_PART}(/{_PATH_PART})*/?)?$"
"""A normalised path below another (empty, absolute or relative): no '.', '..' or empty components, no whitespace,
so it cannot escape the directory it is joined to."""

ABSOLUTE_PATH_PATTERN = rf"^/({_PATH_PART}(/{_PATH_PART})*/?)?$"
"""A normalised absolute path, not empty."""

_HOST_PART = r"([A-Za-z0-9_-][A-Za-z0-9._-]*|\.[A-Za-z0-9_-][A-Za-z0-9._-]*|\.\.[A-Za-z0-9._-]+)"
HOST_PATH_PATTERN = rf"^(/{_HOST_PART}){{2,}}/?$"
"""A normalised absolute host path of at least two components of letters, digits, '.', '_' and '-'."""

PROTECTED_HOST_DIRECTORIES = (
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib*",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var",
    "/opt/cni",
    "/opt/containerd",
)
"""Host directories whose contents the node needs (the system, the kubelet's, the container runtimes' and etcd's
state under /var, /etc and /run, the CNI plugins): hostOnloadPath may be none of them and lie inside none."""

PROTECTED_HOST_PATTERN = (
    r"^/(bin|boot|dev|etc|home|lib[A-Za-z0-9_]*|proc|root|run|sbin|sys|usr|var|opt/cni|opt/containerd)(/|$)"
)
"""Matches a path that is a protected host directory or lies inside one."""

MAX_PATH_LENGTH = 4096
"""Paths are bounded so that the CRD's CEL rules have a bounded cost."""

HOST_PATH_RULE = f"!self.matches('{PROTECTED_HOST_PATTERN}')"
HOST_PATH_MESSAGE = (
    "hostOnloadPath must not be a protected host directory or lie inside one ("
    + ", ".join(PROTECTED_HOST_DIRECTORIES)
    + ")"
)


def host_path_error(path: str) -> str | None:
    """Why ``path`` may not receive the Onload files on the host, or None."""
    if not re.fullmatch(HOST_PATH_PATTERN[1:-1], path):
        return (
            "hostOnloadPath must be a normalised absolute path of at least two components of letters, digits, "
            "'.', '_' and '-' (no '.' or '..' components)"
        )
    if re.search(PROTECTED_HOST_PATTERN, path):
        return HOST_PATH_MESSAGE
    return None


def label_key_error(key: str) -> str | None:
    """Why ``key`` is not a valid Kubernetes label key, or None."""
    prefix, _slash, _name = key.rpartition("/")
    if not re.fullmatch(LABEL_KEY_PATTERN[1:-1], key):
        return (
            f"label key {key!r} must be an optional DNS-subdomain prefix and '/', then a name of at most 63 "
            "letters, digits, '-', '_' and '.' that starts and ends with a letter or digit"
        )
    if len(prefix) > 253:
        return f"label key {key!r}: the prefix may have at most 253 characters"
    return None


_GO_REFUSALS = (
    (re.compile(r"^(?:[^\\]|\\.)*?\\C"), "\\C (any byte) is not supported by Go's regexp"),
    (
        re.compile(r"^(?:[^\\]|\\.)*?\(\?<[A-Za-z_]"),
        "(?<name>...) is refused by the Go versions that build KMM before Go 1.22; write (?P<name>...)",
    ),
)
"""Syntax that RE2 compiles and Go's regexp (KMM's engine) does not: each is matched outside escapes."""


def regexp_error(pattern: str) -> str | None:
    """Why a kernel-mapping regexp does not compile under Go's regexp (KMM's engine), or None.

    RE2 decides the syntax they share; Go's own refusals are checked first."""
    for refusal, reason in _GO_REFUSALS:
        if refusal.search(pattern):
            return reason
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options=options)
    except re2.error as error:
        detail = error.args[0] if error.args else error
        return detail.decode() if isinstance(detail, bytes) else str(detail)
    return None
