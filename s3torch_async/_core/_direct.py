"""Starting the lean transport without botocore, when botocore would have nothing to decide.

Opening an aiobotocore client costs ~0.3 s of imports and ~60 ms of set-up (models, endpoint
rules, credential chain): what every spawned DataLoader worker pays before its first byte.
For the common configurations the answers botocore would give are known, and :func:`plan`
gives them directly; for anything else it names the reason, and the client starts through
botocore exactly as before.

The direct start applies when all of these hold (else the client starts through botocore):

* no ``profile=`` in the client config, and neither ``AWS_PROFILE`` nor ``AWS_DEFAULT_PROFILE``
  is set (a named profile may not exist, which botocore reports, and it selects the settings);
* credentials: ``unsigned=True``, or ``AWS_ACCESS_KEY_ID`` and ``AWS_SECRET_ACCESS_KEY`` are
  set and ``AWS_CREDENTIAL_EXPIRATION`` is not. botocore's chain asks the environment first
  unless a profile was named explicitly (``Session(profile=...)``), so these are the
  credentials botocore would use; the token is ``AWS_SECURITY_TOKEN``, else
  ``AWS_SESSION_TOKEN``, as botocore reads them;
* the config and credentials files "change nothing": each of ``AWS_CONFIG_FILE`` (default
  ``~/.aws/config``) and ``AWS_SHARED_CREDENTIALS_FILE`` (default ``~/.aws/credentials``) is
  absent, or parses, and the sections botocore reads as the default profile hold no key but
  :data:`HARMLESS_PROFILE_KEYS` (``region`` is harmless: the client passes its own);
* none of the environment variables in :data:`BOTOCORE_DECIDES` is set (FIPS, dual-stack,
  the us-east-1 endpoint style, defaults mode, custom models, ARN and S3 Express settings,
  auth scheme preferences), and no proxy is configured (``*_proxy`` variables; on macOS and
  Windows the system's proxy settings too);
* the endpoint is AWS in the ``aws`` partition (``region`` matching :data:`AWS_REGION`), or a
  plain ``http(s)://host[:port][/path]`` URL with a valid host name or IP address, and the
  region is a plain region name (no ``fips``, not ``aws-global``).

What the direct start then uses, as botocore would: the client's region for signing; the CA
bundle ``AWS_CA_BUNDLE``, else certifi's (botocore's own bundle without certifi); the checksum
settings ``AWS_REQUEST_CHECKSUM_CALCULATION`` / ``AWS_RESPONSE_CHECKSUM_VALIDATION``; and each
bucket's base URL from :meth:`DirectStart.base`. A bucket whose address is not decided here
(dots or capitals in the name, ``--`` suffixes such as S3 Express's ``--x-s3``, path-style on
AWS) is asked of botocore's endpoint rules, which are then opened on first need, as are the
calls the lean transport leaves to botocore (multipart control calls, copy, delete).
"""

from __future__ import annotations

import ipaddress
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Optional, Union
from urllib.parse import urlsplit

from ._checksum import ChecksumPolicy

__all__ = [
    "AWS_REGION",
    "BOTOCORE_DECIDES",
    "HARMLESS_PROFILE_KEYS",
    "DirectStart",
    "EnvCredentials",
    "default_ca_file",
    "plan",
]

#: Environment variables that change what botocore decides for S3 (addressing, endpoints,
#: signing, credentials): when one is set, the client starts through botocore.
BOTOCORE_DECIDES = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CREDENTIAL_EXPIRATION",
    "AWS_DATA_PATH",
    "AWS_DEFAULTS_MODE",
    "AWS_USE_FIPS_ENDPOINT",
    "AWS_USE_DUALSTACK_ENDPOINT",
    "AWS_S3_US_EAST_1_REGIONAL_ENDPOINT",
    "AWS_S3_USE_ARN_REGION",
    "AWS_S3_DISABLE_MULTIREGION_ACCESS_POINTS",
    "AWS_S3_DISABLE_EXPRESS_SESSION_AUTH",
    "AWS_SIGV4A_SIGNING_REGION_SET",
    "AWS_AUTH_SCHEME_PREFERENCE",
    "AWS_DISABLE_HOST_PREFIX_INJECTION",
)

#: Keys of the default profile (config or credentials file) that change nothing for a client
#: started directly: its region is the client's own, the output format and ``cli_*`` keys are
#: the AWS CLI's, and profile credentials come after the environment's in botocore's chain.
HARMLESS_PROFILE_KEYS = frozenset(
    {
        "region",
        "output",
        "aws_access_key_id",
        "aws_secret_access_key",
        "aws_session_token",
        "aws_security_token",
    }
)

#: The regions of botocore's ``aws`` partition (its ``regionRegex`` in partitions.json).
AWS_REGION = re.compile(r"^(us|eu|ap|sa|ca|me|af|il|mx)\-\w+\-\d+$")
_REGION = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# A host name botocore accepts (botocore.utils.is_valid_endpoint_url).
_HOST = re.compile(
    r"^((?!-)[A-Z\d-]{1,63}(?<!-)\.)*((?!-)[A-Z\d-]{1,63}(?<!-))$", re.IGNORECASE
)
_PATH = re.compile(r"^(/[A-Za-z0-9._~-]+)*/?$")
# Buckets addressed here: virtual-host style on AWS (DNS-compatible, no dots), path style on a
# custom endpoint (botocore's bucket name check). Names with "--" carry meaning to botocore's
# endpoint rules (S3 Express "--x-s3", Outposts, Object Lambda): its rules decide those.
_VIRTUAL_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_PATH_BUCKET = re.compile(r"^[A-Za-z0-9._-]{1,255}$")

Base = tuple[str, str, str]  # (scheme://host, host, path prefix), as _lean's


@dataclass(frozen=True)
class EnvCredentials:
    """Static credentials from the environment (what botocore's ``EnvProvider`` returns)."""

    access_key: str
    secret_key: str
    token: Optional[str]

    def __repr__(self) -> str:
        return f"EnvCredentials(access_key={self.access_key!r}, secret_key=***)"

    async def get_frozen_credentials(self) -> EnvCredentials:
        return self


@dataclass(frozen=True)
class DirectStart:
    """What a client started without botocore needs (see the module docstring)."""

    #: ``None`` for unsigned requests.
    credentials: Optional[EnvCredentials]
    checksums: ChecksumPolicy
    #: CA bundle for HTTPS; ``None`` for an ``http://`` endpoint.
    ca_file: Optional[str]
    region: str
    endpoint: Optional[str]
    path_style: bool

    def base(self, bucket: str) -> Optional[Base]:
        """``bucket``'s base URL as botocore's endpoint rules give it, ``None``: ask them."""
        if "--" in bucket:
            return None
        if self.endpoint is None:
            if self.path_style or not _VIRTUAL_BUCKET.match(bucket):
                return None
            host = f"{bucket}.s3.amazonaws.com"
            return f"https://{host}", host, "/"
        if not _PATH_BUCKET.match(bucket):
            return None
        # botocore addresses every bucket of a custom endpoint path-style (the endpoint's
        # own path first); checked against its rules in tests/unit/test_direct_start.py.
        parts = urlsplit(self.endpoint)
        prefix = parts.path.rstrip("/") + f"/{bucket}/"
        return f"{parts.scheme.lower()}://{parts.netloc}", parts.netloc, prefix


def plan(
    *,
    region: str,
    endpoint: Optional[str],
    path_style: bool,
    unsigned: bool,
    profile: Optional[str],
    environ: Optional[Mapping[str, str]] = None,
) -> Union[DirectStart, str]:
    """The direct start for this configuration, or why the client must start through botocore.

    Raises:
        ValueError: A checksum setting is neither ``when_supported`` nor ``when_required``
            (botocore's start raises the same).
    """
    env = os.environ if environ is None else environ
    if profile:
        return "a profile was named (profile=...)"
    for name in BOTOCORE_DECIDES:
        if name in env:
            return f"{name} is set"
    proxy = _proxy_setting(env)
    if proxy:
        return f"a proxy is configured ({proxy})"
    if (
        not isinstance(region, str)
        or not _REGION.match(region)
        or "fips" in region
        or region == "aws-global"
        or region.isdigit()
    ):
        return f"region {region!r} is left to botocore"
    if endpoint is None:
        if not AWS_REGION.match(region):
            return f"region {region!r} is not in the aws partition"
    else:
        why = _endpoint_problem(endpoint)
        if why:
            return why
    credentials: Optional[EnvCredentials] = None
    if not unsigned:
        access_key = env.get("AWS_ACCESS_KEY_ID", "")
        secret_key = env.get("AWS_SECRET_ACCESS_KEY", "")
        if not access_key or not secret_key:
            return "no credentials in the environment"
        token = env.get("AWS_SECURITY_TOKEN", "") or env.get("AWS_SESSION_TOKEN", "")
        credentials = EnvCredentials(access_key, secret_key, token or None)
    for variable, default in (
        ("AWS_CONFIG_FILE", "~/.aws/config"),
        ("AWS_SHARED_CREDENTIALS_FILE", "~/.aws/credentials"),
    ):
        why = _file_problem(env.get(variable, default), variable)
        if why:
            return why
    https = endpoint is None or endpoint.lower().startswith("https:")
    checksums = ChecksumPolicy.from_settings(
        lambda name: env.get(f"AWS_{name.upper()}")
    )
    return DirectStart(
        credentials=credentials,
        checksums=checksums,
        ca_file=(env.get("AWS_CA_BUNDLE") or default_ca_file()) if https else None,
        region=region,
        endpoint=endpoint,
        path_style=path_style,
    )


def default_ca_file() -> str:
    """The CA bundle botocore verifies HTTPS with by default: certifi's, else its own."""
    try:
        import certifi
    except ImportError:
        import importlib.util

        spec = importlib.util.find_spec("botocore")
        origin = spec.origin if spec is not None else None
        if origin is None:
            raise
        return os.path.join(os.path.dirname(origin), "cacert.pem")
    return str(certifi.where())


def _proxy_setting(env: Mapping[str, str]) -> Optional[str]:
    # urllib's getproxies() (which botocore asks): every non-empty "<scheme>_proxy" variable.
    for name, value in env.items():
        if value and name.lower().endswith("_proxy") and name.lower() != "no_proxy":
            return name
    if sys.platform in ("darwin", "win32"):
        import urllib.request

        if urllib.request.getproxies():
            return "system proxy settings"
    return None


def _endpoint_problem(endpoint: str) -> Optional[str]:
    """Why botocore must handle ``endpoint`` (or reject it), ``None`` for a plain URL."""
    why = f"endpoint {endpoint!r} is left to botocore"
    if any(c in endpoint for c in "\t\r\n\\ %?#@") or not endpoint.isascii():
        return why
    parts = urlsplit(endpoint)
    if parts.scheme.lower() not in ("http", "https"):
        return why
    if not _PATH.match(parts.path) or parts.netloc.endswith(":"):
        return why
    try:
        port = parts.port
    except ValueError:
        return why
    if port == 0:
        return why
    host = parts.hostname or ""
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return why
        return None
    if not host or len(host) > 255 or host.endswith(".") or not _HOST.match(host):
        return why
    return None


def _file_problem(path: str, variable: str) -> Optional[str]:
    """Why the config or credentials file at ``path`` leaves the start to botocore."""
    path = os.path.expanduser(os.path.expandvars(path))
    if not os.path.isfile(path):
        return None
    import configparser  # only for a file that exists

    parser = configparser.RawConfigParser()
    try:
        parser.read([path])
    except (configparser.Error, UnicodeDecodeError):
        return f"{variable} ({path}) does not parse"
    for section in parser.sections():
        if not _is_default_profile(section):
            continue
        for key in parser.options(section):
            if key not in HARMLESS_PROFILE_KEYS and not key.startswith("cli_"):
                return f"{variable} ({path}) sets {key!r} in [{section}]"
    return None


def _is_default_profile(section: str) -> bool:
    # As botocore's build_profile_map: [default], or [profile default] (split as shlex does).
    if section == "default":
        return True
    if not section.startswith("profile"):
        return False
    import shlex

    try:
        parts = shlex.split(section)
    except ValueError:
        return False
    return len(parts) == 2 and parts[1] == "default"
