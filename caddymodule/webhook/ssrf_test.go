package webhook

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestCheckURL(t *testing.T) {
	const (
		ok     = ""
		reject = "!" // rejected, reason not checked beyond being non-empty
	)
	cases := []struct {
		url      string
		allowDev bool
		want     string // "" accepted; otherwise a substring of the reason (or reject)
	}{
		// Accepted in production.
		{"https://hooks.example.com/wake", false, ok},
		{"https://hooks.example.com:8443/wake?key=abc", false, ok},
		{"HTTPS://Hooks.Example.COM/wake", false, ok},
		{"https://93.184.216.34/wake", false, ok},
		{"https://[2606:2800:220:1:248:1893:25c8:1946]/wake", false, ok},
		{"https://xn--bcher-kva.example/wake", false, ok},
		{"https://8.8.8.8:443/", false, ok},

		// Scheme and shape.
		{"http://hooks.example.com/wake", false, "scheme must be https"},
		{"http://hooks.example.com/wake", true, "scheme must be https"},
		{"ftp://hooks.example.com/", false, "scheme must be https"},
		{"file:///etc/passwd", false, "scheme must be https"},
		{"gopher://127.0.0.1:6379/_INFO", false, "scheme must be https"},
		{"https:hooks.example.com", false, "absolute"},
		{"/relative/path", false, "scheme must be https"},
		{"https://", false, "absolute"},
		{"https://:443/", false, "empty host"},
		{"https://hooks.example.com:/", false, "empty port"},
		{"https://hooks.example.com:0/", false, "invalid port"},
		{"https://hooks.example.com:65536/", false, reject},
		{"https://hooks.example.com:0443/", false, "invalid port"},
		{"https://" + strings.Repeat("a", 2100) + ".com/", false, "longer than"},

		// User info tricks.
		{"https://user:pass@hooks.example.com/", false, "user info"},
		{"https://hooks.example.com@127.0.0.1/", false, "user info"},
		{"https://127.0.0.1#@hooks.example.com/", false, "loopback"},
		{"https://hooks.example.com\\@127.0.0.1/", false, reject},
		{"https://@hooks.example.com/", false, "user info"},

		// Development switch.
		{"http://localhost:8080/hook", true, ok},
		{"https://localhost/hook", true, ok},
		{"http://127.0.0.1:9000/hook", true, ok},
		{"http://127.0.0.255/hook", true, ok},
		{"HTTP://LOCALHOST:8080/hook", true, ok},
		{"http://localhost:8080/hook", false, "development switch"},
		{"http://127.0.0.1:9000/hook", false, "development switch"},
		{"https://127.0.0.1/hook", false, "development switch"},
		{"http://127.0.1.1/hook", true, "loopback"},
		{"http://[::1]:8080/hook", true, "loopback"},
		{"http://localhost./hook", true, "ends with a dot"},
		{"http://127.1/hook", true, "non-canonical"},
		{"http://app.localhost/hook", true, "local name"},

		// Loopback spellings.
		{"https://127.0.0.1/", false, "development switch"},
		{"https://127.255.255.254/", false, "loopback"},
		{"https://2130706433/", false, "non-canonical spelling of IPv4 127.0.0.1, loopback"},
		{"https://0177.0.0.1/", false, "non-canonical spelling of IPv4 127.0.0.1"},
		{"https://0x7f.1/", false, "non-canonical spelling of IPv4 127.0.0.1"},
		{"https://0x7F000001/", false, "non-canonical spelling of IPv4 127.0.0.1"},
		{"https://127.1/", false, "non-canonical spelling of IPv4 127.0.0.1"},
		{"https://127.0.1/", false, "non-canonical spelling of IPv4 127.0.0.1"},
		{"https://0x7f.0x0.0x0.0x1/", false, "non-canonical"},
		{"https://017700000001/", false, "non-canonical spelling of IPv4 127.0.0.1"},
		{"https://127.000.000.001/", false, "non-canonical"},
		{"https://0/", false, "non-canonical spelling of IPv4 0.0.0.0"},
		{"https://0.0.0.0/", false, "this network"},
		{"https://[::1]/", false, "loopback"},
		{"https://[0:0:0:0:0:0:0:1]/", false, "loopback"},
		{"https://[::]/", false, "unspecified"},
		{"https://[::ffff:127.0.0.1]/", false, "IPv4-mapped"},
		{"https://[::ffff:7f00:1]/", false, "IPv4-mapped"},
		{"https://[::ffff:8.8.8.8]/", false, "IPv4-mapped"},
		{"https://[::127.0.0.1]/", false, "IPv4-compatible"},
		{"https://[64:ff9b::7f00:1]/", false, "NAT64"},
		{"https://[64:ff9b::808:808]/", false, "NAT64 address"},
		{"https://[64:ff9b:1::1]/", false, "local-use NAT64"},
		{"https://localhost/", false, "development switch"},
		{"https://LOCALHOST/", false, "development switch"},
		{"https://localhost./", false, "ends with a dot"},
		{"https://hooks.example.com./", false, "ends with a dot"},
		{"https://foo.localhost/", false, "local name (.localhost)"},
		{"https://127.0.0.1./", false, "ends with a dot"},
		{"https://%31%32%37.0.0.1/", false, reject},
		{"https://127.0.0.1%2509/", false, reject},

		// Private, link-local, CGNAT, metadata.
		{"https://10.0.0.1/", false, "private (RFC 1918)"},
		{"https://10.255.255.255/", false, "private"},
		{"https://172.16.0.1/", false, "private"},
		{"https://172.31.255.255/", false, "private"},
		{"https://172.32.0.1/", false, ok},
		{"https://192.168.1.1/", false, "private"},
		{"https://0xc0a80101/", false, "non-canonical spelling of IPv4 192.168.1.1, private"},
		{"https://169.254.169.254/latest/meta-data/", false, "link-local"},
		{"https://0251.0376.0251.0376/", false, "non-canonical spelling of IPv4 169.254.169.254"},
		{"https://100.64.0.1/", false, "CGNAT"},
		{"https://100.100.100.200/", false, "CGNAT"},
		{"https://100.128.0.1/", false, ok},
		{"https://[fd00:ec2::254]/", false, "unique-local"},
		{"https://[fc00::1]/", false, "unique-local"},
		{"https://[fe80::1]/", false, "link-local"},
		{"https://[fe80::1%25eth0]/", false, "zones"},
		{"https://[fec0::1]/", false, "site-local"},

		// Multicast, broadcast, reserved, documentation.
		{"https://224.0.0.1/", false, "multicast"},
		{"https://239.255.255.250/", false, "multicast"},
		{"https://255.255.255.255/", false, "reserved"},
		{"https://240.0.0.1/", false, "reserved"},
		{"https://192.0.2.1/", false, "documentation"},
		{"https://198.18.0.1/", false, "benchmarking"},
		{"https://[ff02::1]/", false, "multicast"},
		{"https://[2001:db8::1]/", false, "documentation"},
		{"https://[2002:7f00:1::]/", false, "6to4"},
		{"https://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", false, "Teredo"},
		{"https://[100::1]/", false, "discard"},

		// Invalid IPv4 spellings.
		{"https://256.0.0.1/", false, "not a valid IPv4"},
		{"https://1.2.3.4.5/", false, "not a valid IPv4"},
		{"https://08.0.0.1/", false, "not a valid IPv4"},
		{"https://4294967296/", false, "not a valid IPv4"},
		{"https://1.2.65536/", false, "not a valid IPv4"},
		{"https://example.123/", false, "not a valid IPv4"},
		{"https://[127.0.0.1]/", false, reject},

		// Names.
		{"https://intranet/", false, "single-label"},
		{"https://metadata/", false, "single-label"},
		{"https://metadata.google.internal/", false, "local name (.internal)"},
		{"https://printer.local/", false, "local name (.local)"},
		{"https://router.home.arpa/", false, "local name (.home.arpa)"},
		{"https://db.localdomain/", false, "local name"},
		{"https://hooks_x.example.com/", false, "not a valid DNS name"},
		{"https://-bad.example.com/", false, "not a valid DNS name"},
		{"https://bücher.example/", false, "punycode"},
		{"https://a..example.com/", false, "not a valid DNS name"},
	}
	if len(cases) < 40 {
		t.Fatalf("only %d cases", len(cases))
	}
	for _, c := range cases {
		err := CheckURL(c.url, c.allowDev)
		if c.want == ok {
			if err != nil {
				t.Errorf("CheckURL(%q, dev=%v) = %v, want accepted", c.url, c.allowDev, err)
			}
			continue
		}
		var re *RejectedError
		if !errors.As(err, &re) || re.Reason == "" {
			t.Errorf("CheckURL(%q, dev=%v) = %v, want *RejectedError", c.url, c.allowDev, err)
			continue
		}
		if c.want != reject && !strings.Contains(re.Reason, c.want) {
			t.Errorf("CheckURL(%q, dev=%v) reason %q, want it to contain %q", c.url, c.allowDev, re.Reason, c.want)
		}
	}
}

func TestCheckDialedAddr(t *testing.T) {
	cases := []struct {
		addr     string
		allowDev bool
		ok       bool
	}{
		{"93.184.216.34", false, true},
		{"2606:2800:220:1:248:1893:25c8:1946", false, true},
		{"127.0.0.1", false, false},
		{"127.0.0.1", true, true},
		{"127.5.5.5", true, true},
		{"::1", true, true},
		{"::1", false, false},
		{"::ffff:127.0.0.1", false, false},
		{"::ffff:127.0.0.1", true, true},
		{"::ffff:93.184.216.34", false, true},
		{"10.1.2.3", true, false},
		{"169.254.169.254", true, false},
		{"64:ff9b::a00:1", false, false},    // NAT64 of 10.0.0.1
		{"64:ff9b::5db8:d822", false, true}, // NAT64 of 93.184.216.34
		{"64:ff9b::7f00:1", true, true},     // NAT64 of loopback, dev
		{"fe80::1%eth0", false, false},
		{"fd00::1", false, false},
		{"0.0.0.0", true, false},
		{"::", true, false},
	}
	for _, c := range cases {
		err := checkDialedAddr(netip.MustParseAddr(c.addr), c.allowDev)
		if (err == nil) != c.ok {
			t.Errorf("checkDialedAddr(%s, dev=%v) = %v, want ok=%v", c.addr, c.allowDev, err, c.ok)
		}
	}
}
