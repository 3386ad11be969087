"""National status codes and the mapping of internal states onto them."""

from __future__ import annotations

from protocol.dossier.status import NATIONAL_STATUS_NAMES, InternalState, NationalStatus


def test_ten_national_codes_with_their_exact_names() -> None:
    assert [s.value for s in NationalStatus] == list(range(1, 11))
    assert [NATIONAL_STATUS_NAMES[s] for s in NationalStatus] == [
        "Mới đăng ký",
        "Được tiếp nhận",
        "Không được tiếp nhận",
        "Đang xử lý",
        "Yêu cầu bổ sung giấy tờ",
        "Yêu cầu thực hiện nghĩa vụ tài chính",
        "Công dân yêu cầu rút hồ sơ",
        "Dừng xử lý",
        "Đã xử lý xong",
        "Đã trả kết quả",
    ]
    assert NationalStatus.RETURNED.label == "Đã trả kết quả"


def test_every_national_code_is_reached_by_some_internal_state() -> None:
    assert {s.national for s in InternalState} == set(NationalStatus)


def test_fine_states_map_to_processing() -> None:
    for state in ("transferred", "awaiting_signature", "awaiting_joint_step", "supplemented"):
        assert InternalState(state).national is NationalStatus.PROCESSING
    assert InternalState.SUPPLEMENTED.label == "Đã bổ sung – chờ tiếp nhận"
    assert InternalState.WITHDRAWN.national is NationalStatus.STOPPED
    assert all(s.label for s in InternalState)
