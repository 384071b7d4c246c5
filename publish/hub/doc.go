// Package hub is changecast's built-in SignalR hub: a single-node stand-in
// for Azure SignalR Service (serverless mode) that the official SignalR
// clients and the Azure REST API callers use unchanged.
//
// # Where to start
//
// Fill a Config (Hubs and Negotiate.Auth are required; zero fields mean
// the Default* constants) and call New: the Server it returns is the hub.
// It serves the hubs of Config.Hubs only: any other gets 404, so callers
// cannot make it keep state for names of their choosing. Run listens on Config.Listen; Serve takes a listener of yours.
// Listening is closed once it listens, and then Endpoint, ConnectionString
// and NegotiateURL tell clients and REST callers where to go. One listener
// serves:
//
//   - the client endpoints: POST /client/negotiate, the WebSocket at
//     /client/, JSON hub protocol;
//   - the data-plane REST API (v1 and 2022-06-01 routes, access-key JWT),
//     which publish/signalr and Azure's SDKs call with ConnectionString;
//   - the app negotiate endpoint at {Negotiate.Path}/negotiate, which
//     authenticates callers, joins users to the groups their claims grant
//     and sends them to the client endpoints;
//   - optionally a static folder at / (Config.Static).
//
// Server.Publisher is the in-process publish.Publisher: batches go
// straight into the clients' queues, no HTTP.
//
// Negotiator (NewNegotiator) is the app negotiate endpoint on its own, for
// apps whose clients connect to Azure SignalR instead. It sends clients to
// a Service, the small interface it declares for what negotiate needs
// (join a user to a group, a client URL and token); *signalr.Client
// satisfies it. The Server's own negotiate (Server.Negotiator) joins
// groups in its registry directly. Negotiator.Authorize applies
// negotiate's rules (served hubs, bearer JWT or anonymous, user claim,
// claim-derived groups) to any request and returns an *AuthError carrying
// the status to answer (StatusOf, Refuse); Negotiator.Handle mounts more
// endpoints under the negotiate path with the same CORS, on the Server
// and on Negotiator.Handler alike.
//
// # Bounds
//
// Config.Limits bounds connections (in all and per user: 429 at
// negotiate, 503 at the upgrade), groups per user (the oldest membership
// is dropped, as Azure does) and access token lifetimes. Memberships of
// anonymous users expire once they are not connected; Run sweeps expired
// memberships and unused connection tokens once a second, never on a
// request's path.
//
// Options (WithLogger, WithKeepAlive …) tune the parts that are not
// configuration: timeouts, queue and body bounds, the logger.
//
// # Ownership
//
// Run (or Serve) owns every connection and returns only after all of them
// are closed; connections accepted through Handler belong to it too. Each
// connection has one read loop, one write loop and a bounded send queue: a
// client that cannot keep up is disconnected, and sends never wait for a
// client. All methods are safe for concurrent use.
//
// Not supported (yet): MessagePack, Server-Sent Events and long polling,
// stateful reconnect, upstream webhooks, and scale-out beyond one node.
package hub
