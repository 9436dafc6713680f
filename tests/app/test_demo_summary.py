"""The demo prints every record the sensor writes, including the lab's own
non-IP sessions (ARP), shown by MAC addresses or ethertype where IP flows have ip:port."""
from sensor.demo import _summary


def _side(**fields) -> dict:
    return {"packets": 1, "bytes": 42, **fields}


def test_an_ip_flow_is_shown_by_address_and_port():
    rec = {"protocol": ["udp"], "source": _side(ip="10.0.0.1", port=5000), "destination": _side(ip="10.0.0.2", port=53)}
    assert "10.0.0.1:5000 -> 10.0.0.2:53" in _summary(rec)


def test_an_icmp_flow_has_no_port():
    rec = {"protocol": ["icmp"], "source": _side(ip="10.0.0.1"), "destination": _side(ip="10.0.0.2")}
    assert "10.0.0.1 -> 10.0.0.2" in _summary(rec)


def test_a_non_ip_session_is_shown_by_its_mac_addresses():
    rec = {"protocol": ["arp"], "source": _side(mac=["02:00:00:00:00:01"]),
           "destination": _side(mac=["ff:ff:ff:ff:ff:ff"])}
    assert "02:00:00:00:00:01 -> ff:ff:ff:ff:ff:ff" in _summary(rec)


def test_a_non_ip_session_keyed_by_kind_alone_is_shown_by_its_ethertype():
    rec = {"protocol": ["arp"], "ethertype": 0x0806, "source": _side(), "destination": _side(bytes=0, packets=0)}
    line = _summary(rec)
    assert "ethertype 0x0806" in line and "?" not in line
