// Package pubcheck holds the rules a publication must pass before it
// reaches a broker, shared by the HTTP API (api) and the /ws protocol
// (push) so that both refuse exactly the same things. It only inspects
// bytes; it never publishes and keeps nothing.
package pubcheck
