"""Channel names as Asterisk 22 writes them (from the e2e runs' AMI events)."""

from __future__ import annotations

import pytest

from wire.channels import device, endpoint, is_local, local_exten, other_half


@pytest.mark.parametrize("channel, dev, ep", [
    ("PJSIP/1001-0000002a", "PJSIP/1001", "1001"),
    ("PJSIP/branch-tax-00000003", "PJSIP/branch-tax", "branch-tax"),
    ("PJSIP/1001", "PJSIP/1001", "1001"),
    ("Local/110@hotline-transfer-00000003;2", "Local/110@hotline-transfer-00000003;2", "110@hotline-transfer"),
    ("1001", "1001", "1001"),
])
def test_device_and_endpoint(channel: str, dev: str, ep: str) -> None:
    assert device(channel) == dev
    assert endpoint(channel) == ep


def test_local_channels() -> None:
    c = "Local/110@hotline-transfer-00000003;2"
    assert is_local(c) and not is_local("PJSIP/1001-0000002a")
    assert local_exten(c) == "110"
    assert other_half(c) == "Local/110@hotline-transfer-00000003;1" and other_half(other_half(c)) == c
    assert other_half("PJSIP/1001-0000002a") == ""
