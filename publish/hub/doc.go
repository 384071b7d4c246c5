// Package hub is changecast's built-in SignalR hub: a stand-in for Azure
// SignalR Service (serverless mode), on one node or several, that the
// official SignalR clients and the Azure REST API callers use unchanged.
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
//   - the client endpoints: POST /client/negotiate, then at /client/ a
//     WebSocket, a Server-Sent Events stream (with POSTs from the client)
//     or long polls (GET, POST, DELETE), in Config.Transports; the JSON
//     and MessagePack hub protocols (codec); stateful reconnect (handshake
//     version 2, Ack and Sequence; Config.StatefulReconnect);
//   - the data-plane REST API (v1, 2022-06-01 and 2024-12-01 routes,
//     api-version checked, access-key JWT), which publish/signalr and
//     Azure's SDKs call with ConnectionString;
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
// Client input is bounded whatever it declares: maxReceive bytes per
// message, body and handshake, maxMessageDepth levels of nesting, and
// MessagePack read by mpReader, which checks every declared length against
// the bytes that remain; a violation closes that connection only. With a
// backplane, errors of Redis reach clients as a generic 503 (the cause is
// logged).
//
// Options (WithLogger, WithKeepAlive …) tune the parts that are not
// configuration: timeouts, queue and body bounds, the logger.
//
// # Connections
//
// A conn is one client connection on any transport: a bounded send queue
// (sendQueue) that transports take whole messages from, and receive, which
// reads the handshake and the client's messages. A WebSocket or a
// Server-Sent Events stream takes from the queue for as long as it lasts;
// each long poll takes what is there. With stateful reconnect the queue
// keeps what was written until the client acknowledges it, and a new
// WebSocket of the same connection gets it again after a Sequence message.
// Sends go through the registry (who is in which group) to the queues of
// the connections they select, encoded once per protocol (outbound).
//
// A WebSocket (wsconn.go, wsTransport) is framed by the hub itself on
// gobwas/ws's primitives so that an idle one costs about 13 KB: its only
// goroutine is its reader, parked in a one-byte read with a small stack;
// read and write buffers come from pools only while a frame is in flight;
// a writer goroutine is started by the queue (sendQueue.waker) when there
// is something to send and ends when the queue is empty; keep-alive pings
// come from one loop over all connections (keepAliveLoop), not a timer
// each. Server-Sent Events and long polls use the queue's notify channel
// and conn.pump.
//
// # Several nodes
//
// With Config.Backplane, a Redis backplane (backplane.go) joins nodes:
// sends, Close and membership changes are published on one Redis channel
// and applied by every node to its own connections; user-group
// memberships, the connections each node holds and negotiated connection
// tokens live in Redis, so any node answers negotiate, REST questions and
// membership changes (cluster.go). Connections stay on their node, so
// Server-Sent Events, long polling and stateful reconnect need sticky
// sessions.
//
// # Ownership
//
// Run (or Serve) owns every connection, and the backplane, and returns only
// after all of them are closed; connections accepted through Handler
// belong to it too. Each transport request is a handler Serve waits for;
// a connection without one (between long polls, or waiting for a stateful
// reconnect) is ended by the once-a-second sweep when its time is up. A
// client that cannot keep up is disconnected, and sends never wait for a
// client. All methods are safe for concurrent use.
//
// Not supported (yet): upstream webhooks, client results (:invoke),
// streaming, and :execute.
package hub
