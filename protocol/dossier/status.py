"""Dossier status: the ten national codes synced to the DVCQG, and the finer internal states mapped onto them.

National codes and names are exactly those of DOMAIN.md §5.1. Internal states (DOMAIN.md §5.1, "finer
internal states") are what the fold tracks; each maps to one national code.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum

__all__ = [
    "InternalState",
    "NATIONAL_STATUS_NAMES",
    "NationalStatus",
]


class NationalStatus(IntEnum):
    """Status codes 1–10 used when syncing to the National Public Service Portal."""

    SUBMITTED = 1
    RECEIVED = 2
    REFUSED = 3
    PROCESSING = 4
    SUPPLEMENT_REQUESTED = 5
    FINANCIAL_OBLIGATION = 6
    WITHDRAWAL_REQUESTED = 7
    STOPPED = 8
    RESOLVED = 9
    RETURNED = 10

    @property
    def label(self) -> str:
        """The Vietnamese name of the status."""
        return NATIONAL_STATUS_NAMES[self]


NATIONAL_STATUS_NAMES: dict[NationalStatus, str] = {
    NationalStatus.SUBMITTED: "Mới đăng ký",
    NationalStatus.RECEIVED: "Được tiếp nhận",
    NationalStatus.REFUSED: "Không được tiếp nhận",
    NationalStatus.PROCESSING: "Đang xử lý",
    NationalStatus.SUPPLEMENT_REQUESTED: "Yêu cầu bổ sung giấy tờ",
    NationalStatus.FINANCIAL_OBLIGATION: "Yêu cầu thực hiện nghĩa vụ tài chính",
    NationalStatus.WITHDRAWAL_REQUESTED: "Công dân yêu cầu rút hồ sơ",
    NationalStatus.STOPPED: "Dừng xử lý",
    NationalStatus.RESOLVED: "Đã xử lý xong",
    NationalStatus.RETURNED: "Đã trả kết quả",
}


class InternalState(StrEnum):
    """A dossier state in the fold; ``national`` is the code synced upward, ``label`` its Vietnamese name."""

    SUBMITTED = "submitted"
    GUIDANCE = "guidance"
    RECEIVED = "received"
    REFUSED = "refused"
    TRANSFERRED = "transferred"
    PROCESSING = "processing"
    AWAITING_SIGNATURE = "awaiting_signature"
    AWAITING_JOINT_STEP = "awaiting_joint_step"
    JOINT_RESULT_RECEIVED = "joint_result_received"
    SUPPLEMENT_REQUESTED = "supplement_requested"
    SUPPLEMENTED = "supplemented"
    FINANCIAL_OBLIGATION = "financial_obligation"
    FINANCIAL_OBLIGATION_MET = "financial_obligation_met"
    WITHDRAWAL_REQUESTED = "withdrawal_requested"
    WITHDRAWN = "withdrawn"
    STOPPED = "stopped"
    RESULT_READY = "result_ready"
    RETURNED = "returned"

    @property
    def national(self) -> NationalStatus:
        """The national status code this state is reported as."""
        return _NATIONAL[self]

    @property
    def label(self) -> str:
        """The Vietnamese name shown to staff."""
        return _LABELS[self]


_NATIONAL: dict[InternalState, NationalStatus] = {
    InternalState.SUBMITTED: NationalStatus.SUBMITTED,
    InternalState.GUIDANCE: NationalStatus.SUPPLEMENT_REQUESTED,
    InternalState.RECEIVED: NationalStatus.RECEIVED,
    InternalState.REFUSED: NationalStatus.REFUSED,
    InternalState.TRANSFERRED: NationalStatus.PROCESSING,
    InternalState.PROCESSING: NationalStatus.PROCESSING,
    InternalState.AWAITING_SIGNATURE: NationalStatus.PROCESSING,
    InternalState.AWAITING_JOINT_STEP: NationalStatus.PROCESSING,
    InternalState.JOINT_RESULT_RECEIVED: NationalStatus.PROCESSING,
    InternalState.SUPPLEMENT_REQUESTED: NationalStatus.SUPPLEMENT_REQUESTED,
    InternalState.SUPPLEMENTED: NationalStatus.PROCESSING,
    InternalState.FINANCIAL_OBLIGATION: NationalStatus.FINANCIAL_OBLIGATION,
    InternalState.FINANCIAL_OBLIGATION_MET: NationalStatus.PROCESSING,
    InternalState.WITHDRAWAL_REQUESTED: NationalStatus.WITHDRAWAL_REQUESTED,
    InternalState.WITHDRAWN: NationalStatus.STOPPED,
    InternalState.STOPPED: NationalStatus.STOPPED,
    InternalState.RESULT_READY: NationalStatus.RESOLVED,
    InternalState.RETURNED: NationalStatus.RETURNED,
}

_LABELS: dict[InternalState, str] = {
    InternalState.SUBMITTED: "Mới đăng ký",
    InternalState.GUIDANCE: "Hướng dẫn bổ sung trước khi tiếp nhận",
    InternalState.RECEIVED: "Hồ sơ mới tiếp nhận",
    InternalState.REFUSED: "Không được tiếp nhận",
    InternalState.TRANSFERRED: "Đã chuyển cơ quan giải quyết",
    InternalState.PROCESSING: "Đang xử lý",
    InternalState.AWAITING_SIGNATURE: "Chờ ký duyệt",
    InternalState.AWAITING_JOINT_STEP: "Chờ thực hiện liên thông",
    InternalState.JOINT_RESULT_RECEIVED: "Đã nhận kết quả liên thông",
    InternalState.SUPPLEMENT_REQUESTED: "Yêu cầu bổ sung giấy tờ",
    InternalState.SUPPLEMENTED: "Đã bổ sung – chờ tiếp nhận",
    InternalState.FINANCIAL_OBLIGATION: "Chờ thực hiện nghĩa vụ tài chính",
    InternalState.FINANCIAL_OBLIGATION_MET: "Đã thực hiện nghĩa vụ tài chính",
    InternalState.WITHDRAWAL_REQUESTED: "Công dân yêu cầu rút hồ sơ",
    InternalState.WITHDRAWN: "Đã rút hồ sơ – dừng xử lý",
    InternalState.STOPPED: "Dừng xử lý",
    InternalState.RESULT_READY: "Chờ trả kết quả",
    InternalState.RETURNED: "Đã trả kết quả",
}
