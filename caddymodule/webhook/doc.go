// Package webhook holds the security-sensitive half of webhook subscriptions
// (PROTOCOL.md §6.5, §7.1, §12.8, §12.10): the SSRF rules for webhook URLs
// (CheckURL at create time, a dial-time check of the address actually
// connected to), the Ed25519 signing keys (KeyRing: kept in data_dir, kid
// from the RFC 7638 thumbprint, published as a JWK Set, rotated with
// `durable-streams-server webhook-key rotate`) and the bounded HTTP sender
// (Sender) that posts signed wake bodies.
//
// The subscription engine decides what to send and when; this package only
// decides whether a URL may be called and sends one body per call. It imports
// nothing from the engine or the Caddy module so both can use it.
package webhook
