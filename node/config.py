"""Node configuration: one frozen dataclass, read once from ``<data>/node.toml`` plus environment overrides.

``load(data_dir, environ)`` is the only code that reads the file or the environment. Every field has help
text (``FIELDS`` / ``help_text``), which docs/node.md must cover (a test checks it). An environment
variable ``MOTCUA_NODE_<FIELD>`` (upper case) overrides the file. Unknown keys and invalid values raise
``ConfigError`` naming the key.

Time zone: the node works in Vietnam time, UTC+7 all year (no DST); it is fixed, not configurable.
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import timedelta, timezone
from pathlib import Path
from typing import Any

from node.device_config import TABLES, check_devices, dump_tables, parse_printer, parse_receipt_printers
from node.device_config import parse_scanner as _parse_scanner
from node.errors import ConfigError
from node.hotfolder import ScannerConfig
from node.printing import PrinterConfig
from protocol.dossier.codes import CodeBlock
from protocol.entry import NODE_ID_RE

__all__ = [
    "CONFIG_FILE",
    "ENV_PREFIX",
    "KINDS",
    "TIMEZONE",
    "NodeConfig",
    "build",
    "dump",
    "help_text",
    "load",
    "validate",
]

CONFIG_FILE = "node.toml"
ENV_PREFIX = "MOTCUA_NODE_"
KINDS = ("branch", "van", "point")
TIMEZONE = timezone(timedelta(hours=7), "ICT")
_UNIT_RE = re.compile(r"[A-Z0-9](?:[A-Z0-9.-]{0,16}[A-Z0-9])?")
_LISTEN_RE = re.compile(r"(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(?P<port>\d{1,5})")


def _f(default: Any, help: str, **kw: Any) -> Any:
    return field(default=default, metadata={"help": help, **kw})


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """Everything a node needs to run; built by ``load`` and never changed afterwards."""

    node_id: str = field(
        metadata={"help": "Mã máy trạm (node id), e.g. CN01, VAN03: [A-Z0-9][A-Z0-9-]{1,31}."}
    )
    unit_code: str = field(
        metadata={"help": "Mã đơn vị tiếp nhận, the first part of every dossier code (e.g. 000.00.01.H26)."}
    )
    name: str = field(metadata={"help": "Tên điểm tiếp nhận shown in the UI and on receipts."})
    data_dir: Path = field(metadata={"help": "State directory (keys, database, blobs); set by --data."})
    kind: str = _f("branch", "Site type: branch (chi nhánh), van (xe lưu động) or point (điểm tiếp nhận).")
    code_block_index: int = _f(
        0, "Index of this node's disjoint daily block of dossier numbers (block k = k*size .. k*size+size-1)."
    )
    code_block_size: int = _f(1000, "Size of each daily block of dossier numbers (1..9999).")
    listen: str = _f("127.0.0.1:8471", "HOST:PORT the web UI and API listen on.")
    hub_url: str | None = _f(
        None, "Base URL of the central hub (e.g. https://hub.example:8470); empty = none."
    )
    session_idle_minutes: int = _f(30, "A staff session ends after this many minutes without a request.")
    session_absolute_hours: int = _f(10, "A staff session ends this many hours after login (shift length).")
    login_max_failures: int = _f(10, "Failed logins allowed per account and per address within the window.")
    login_window_minutes: int = _f(
        15, "Window for counting failed logins; the lockout lasts until it slides."
    )
    secure_cookies: bool = _f(
        False, "Always mark the session cookie Secure (it is also set when the request came over HTTPS)."
    )
    low_disk_mb: int = _f(512, "Refuse new scans and warn when free disk space falls below this (MiB).")
    scan_retention_days: int = _f(
        30, "Delete local scan files the hub holds, of dossiers closed more than this many days ago."
    )
    due_soon_hours: int = _f(24, "The 'Hôm nay' page lists dossiers due within this many hours as due soon.")
    log_level: str = _f("INFO", "Logging level: DEBUG, INFO, WARNING or ERROR.")
    sync_interval_seconds: int = _f(
        30, "Seconds between sync rounds when nothing new was recorded (a new entry syncs at once)."
    )
    sync_max_backoff_seconds: int = _f(
        300, "Longest wait between sync attempts while the hub is unreachable (backoff with jitter)."
    )
    # -- encryption at rest (node.atrest): how the data key is wrapped --------------------------------
    key_source: str = _f(
        "file",
        "What unwraps the data key (DB + scans encryption): 'file' (key file, no prompt; no protection "
        "against a stolen disk: fixed branch PCs with full-disk encryption only), 'passphrase' (staff enter "
        "it at shift start: 'Mở khóa dữ liệu') or 'systemd-creds' (TPM2/host key, LoadCredentialEncrypted=).",
    )
    key_file: str = _f("", "Key file of key_source = 'file'; empty = <data>/datakey.kek.")
    key_credential: str = _f(
        "motcua-node-datakey",
        "Credential name of key_source = 'systemd-creds' ($CREDENTIALS_DIRECTORY/NAME).",
    )
    blob_key_max_messages: int = _f(
        1 << 32,
        "Blobs encrypted under one blob key before the node rotates to a new key generation "
        "(NIST SP 800-38D bound; old generations stay for reading).",
    )
    # -- devices and printed forms (tables [[scanner]], [[printer]], [receipt_printers]) --------------
    scanners: tuple[ScannerConfig, ...] = _f(
        (), "Scanners: one [[scanner]] table each (name, folder, desk, polling); 'motcua-node scanner add'."
    )
    printers: tuple[PrinterConfig, ...] = _f(
        (), "Printers: one [[printer]] table each (name, queue = CUPS queue, or folder); 'printer add'."
    )
    receipt_printer: str | None = _f(
        None, "Printer (name) for receipts and forms when the desk has none; empty = the first printer."
    )
    receipt_printers: tuple[tuple[str, str], ...] = _f(
        (), "[receipt_printers] table: desk = printer name, the receipt printer of each desk."
    )
    scan_session_minutes: int = _f(
        30, "A desk's open dossier ('Quét vào hồ sơ này') closes after this many minutes without a scan."
    )
    agency: str = _f("", "Parent agency printed on forms, e.g. 'UBND QUẬN TÂY HỒ'; empty = the name.")
    reception_unit: str = _f("BỘ PHẬN TIẾP NHẬN VÀ TRẢ KẾT QUẢ", "Receiving unit printed on forms.")
    place: str = _f("Hà Nội", "Place name of the date line on forms ('Tây Hồ, ngày ... tháng ...').")
    hotline: str = _f("", "Support phone number printed on receipts; empty = none.")
    tracking_url: str = _f(
        "https://dichvucong.hanoi.gov.vn",
        "Public page where applicants track a dossier; the receipt's QR links here (code + lookup code).",
    )

    @property
    def code_block(self) -> CodeBlock:
        return CodeBlock.indexed(self.code_block_index, self.code_block_size)

    @property
    def host_port(self) -> tuple[str, int]:
        match = _LISTEN_RE.fullmatch(self.listen)
        assert match is not None  # validated by load()
        return match["host"].strip("[]"), int(match["port"])

    @property
    def db_path(self) -> Path:
        return self.data_dir / "node.sqlite3"

    @property
    def key_path(self) -> Path:
        return self.data_dir / "node.key"

    @property
    def kek_file(self) -> Path | None:
        """The configured key file (key_source = 'file'), or None for the default <data>/datakey.kek."""
        return Path(self.key_file) if self.key_file else None

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"


FIELDS = {f.name: f for f in fields(NodeConfig)}
_TABLE_FIELDS = set(TABLES.values())
_FILE_KEYS = set(FIELDS) - {"data_dir"} - _TABLE_FIELDS


def help_text() -> dict[str, str]:
    """Field name -> help, for docs and ``--help``."""
    return {name: str(f.metadata["help"]) for name, f in FIELDS.items()}


def _type_of(name: str) -> str:
    return str(FIELDS[name].type)


def _coerce(name: str, value: object, *, from_env: bool) -> object:
    kind = _type_of(name)
    where = f"{ENV_PREFIX}{name.upper()}" if from_env else name
    if kind == "int":
        if from_env and isinstance(value, str):
            if not re.fullmatch(r"-?\d+", value.strip()):
                raise ConfigError(f"{where}: phải là số nguyên, không phải {value!r}")
            value = int(value)
        if type(value) is not int:
            raise ConfigError(f"{where}: phải là số nguyên, không phải {value!r}")
        return value
    if kind == "bool":
        if from_env and isinstance(value, str):
            lowered = value.strip().lower()
            if lowered not in {"true", "false", "1", "0", "yes", "no"}:
                raise ConfigError(f"{where}: phải là true hoặc false, không phải {value!r}")
            return lowered in {"true", "1", "yes"}
        if type(value) is not bool:
            raise ConfigError(f"{where}: phải là true hoặc false, không phải {value!r}")
        return value
    if value is None and kind == "str | None":  # an empty MOTCUA_NODE_HUB_URL clears the file's value
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{where}: phải là chuỗi ký tự, không phải {value!r}")
    if kind == "str | None":
        return value.strip() or None
    return value


def validate(config: NodeConfig) -> None:
    """Raise ``ConfigError`` naming the first invalid field."""

    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{key}: {why}")

    if not NODE_ID_RE.fullmatch(config.node_id):
        raise bad("node_id", f"{config.node_id!r} phải khớp [A-Z0-9][A-Z0-9-]{{1,31}} (ví dụ CN01)")
    if not _UNIT_RE.fullmatch(config.unit_code):
        raise bad("unit_code", f"{config.unit_code!r} phải gồm 1–18 ký tự A–Z, 0–9, '.', '-'")
    if not config.name.strip() or len(config.name) > 200:
        raise bad("name", "không được để trống, tối đa 200 ký tự")
    if config.kind not in KINDS:
        raise bad("kind", f"{config.kind!r} phải là một trong {', '.join(KINDS)}")
    if not 1 <= config.code_block_size <= 9999:
        raise bad("code_block_size", "phải từ 1 đến 9999")
    if config.code_block_index < 0 or config.code_block_index * config.code_block_size + 1 > 9999:
        raise bad("code_block_index", "dải số nằm ngoài 0001–9999 với kích thước dải đã cấu hình")
    if _LISTEN_RE.fullmatch(config.listen) is None or not 1 <= int(config.listen.rsplit(":", 1)[1]) <= 65535:
        raise bad("listen", f"{config.listen!r} phải có dạng HOST:PORT (ví dụ 127.0.0.1:8471)")
    if config.hub_url is not None and not re.fullmatch(r"https?://[^\s/]+(/\S*)?", config.hub_url):
        raise bad("hub_url", f"{config.hub_url!r} phải là URL http(s)://…")
    for key, low, high in (
        ("session_idle_minutes", 1, 24 * 60),
        ("session_absolute_hours", 1, 24),
        ("login_max_failures", 1, 1000),
        ("login_window_minutes", 1, 24 * 60),
        ("low_disk_mb", 0, 10**7),
        ("scan_retention_days", 0, 3650),
        ("due_soon_hours", 1, 24 * 30),
        ("sync_interval_seconds", 1, 3600),
        ("sync_max_backoff_seconds", 1, 3600),
    ):
        value = getattr(config, key)
        if not low <= value <= high:
            raise bad(key, f"phải từ {low} đến {high}, không phải {value}")
    if config.key_source not in ("file", "passphrase", "systemd-creds"):
        raise bad("key_source", f"{config.key_source!r} phải là file, passphrase hoặc systemd-creds")
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", config.key_credential):
        raise bad("key_credential", "1–64 ký tự A–Z, a–z, 0–9, '_', '.', '-'")
    if not 1 <= config.blob_key_max_messages <= 1 << 32:
        raise bad("blob_key_max_messages", "phải từ 1 đến 2^32")
    if config.log_level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise bad("log_level", "phải là DEBUG, INFO, WARNING hoặc ERROR")
    _validate_forms_and_devices(config, bad)


def _validate_forms_and_devices(config: NodeConfig, bad: Any) -> None:
    if not 1 <= config.scan_session_minutes <= 24 * 60:
        raise bad("scan_session_minutes", f"phải từ 1 đến 1440, không phải {config.scan_session_minutes}")
    for key in ("agency", "reception_unit", "place", "hotline"):
        value = getattr(config, key)
        if len(value) > 200 or any(ord(c) < 32 for c in value):
            raise bad(key, "tối đa 200 ký tự, không chứa ký tự điều khiển")
    if not config.reception_unit.strip() or not config.place.strip():
        raise bad("reception_unit" if not config.reception_unit.strip() else "place", "không được để trống")
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", config.tracking_url):
        raise bad("tracking_url", f"{config.tracking_url!r} phải là URL http(s)://… (không có ?, #)")
    check_devices(
        config.scanners, config.printers, config.receipt_printer, config.receipt_printers, config.data_dir
    )


def build(values: Mapping[str, object], data_dir: Path) -> NodeConfig:
    """A validated config from already-typed values (used by ``init`` and tests)."""
    unknown = set(values) - _FILE_KEYS - set(TABLES)
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: khóa cấu hình không tồn tại")
    missing = [n for n in ("node_id", "unit_code", "name") if n not in values]
    if missing:
        raise ConfigError(f"{missing[0]}: thiếu khóa cấu hình bắt buộc")
    tables = {TABLES[key]: values[key] for key in TABLES if key in values}
    values = {key: value for key, value in values.items() if key not in TABLES}
    typed = {name: _coerce(name, value, from_env=False) for name, value in values.items()}
    typed.update(_parse_tables(tables))
    try:
        config = NodeConfig(data_dir=data_dir, **typed)  # type: ignore[arg-type]
    except TypeError as exc:  # pragma: no cover - guarded above
        raise ConfigError(str(exc)) from None
    validate(config)
    return config


def _parse_tables(tables: Mapping[str, object]) -> dict[str, object]:
    out: dict[str, object] = {}
    for field_name, raw in tables.items():
        if field_name == "receipt_printers":
            out[field_name] = parse_receipt_printers(raw)
            continue
        key = "scanner" if field_name == "scanners" else "printer"
        if isinstance(raw, tuple) and all(isinstance(v, ScannerConfig | PrinterConfig) for v in raw):
            out[field_name] = raw  # already typed (replace() of a loaded config, tests)
            continue
        if not isinstance(raw, list):
            raise ConfigError(f"{key}: phải là danh sách bảng [[{key}]]")
        parse = _parse_scanner if key == "scanner" else parse_printer
        out[field_name] = tuple(parse(item, i) for i, item in enumerate(raw))
    return out


def load(data_dir: str | Path, environ: Mapping[str, str] | None = None) -> NodeConfig:
    """Read ``<data_dir>/node.toml`` and apply ``MOTCUA_NODE_*`` overrides from ``environ``."""
    data_dir = Path(data_dir)
    path = data_dir / CONFIG_FILE
    try:
        with path.open("rb") as handle:
            values: dict[str, object] = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"không tìm thấy {path}; hãy chạy 'motcua-node init' trước") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: không đọc được TOML: {exc}") from None
    for key, value in values.items():
        if isinstance(value, dict) and key not in TABLES:
            raise ConfigError(f"[{key}]: mục cấu hình không tồn tại")
    for name, raw in (environ or {}).items():
        if not name.startswith(ENV_PREFIX):
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key in _TABLE_FIELDS:
            raise ConfigError(
                f"{name}: máy quét/máy in chỉ cấu hình trong {CONFIG_FILE}, không qua biến môi trường"
            )
        if key not in _FILE_KEYS:
            raise ConfigError(f"{name}: biến môi trường không tương ứng khóa cấu hình nào")
        values[key] = _coerce(key, raw, from_env=True)
    return build(values, data_dir)


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'


def dump(config: NodeConfig) -> str:
    """The TOML text of a config (every field, with its help as a comment; ``hub_url`` omitted if unset)."""
    lines = ["# motcua node configuration. Environment variables MOTCUA_NODE_<KEY> override these.", ""]
    for f in dataclasses.fields(config):
        if f.name == "data_dir" or f.name in _TABLE_FIELDS:
            continue
        value = getattr(config, f.name)
        lines.append(f"# {f.metadata['help']}")
        lines.append(f"{f.name} = {_toml_value(value)}" if value is not None else f"# {f.name} = ")
    return "\n".join(lines) + "\n" + dump_tables(config.scanners, config.printers, config.receipt_printers)
