// Package hub is changecast's built-in SignalR hub: a single-node stand-in
// for Azure SignalR Service (serverless mode) that the official SignalR
// clients and the Azure REST API callers use unchanged.
//
// Which type to use:
//
//   - Server (New, then Run) is the hub. It serves, on one listener, the
//     client endpoints (POST /client/negotiate, the WebSocket at /client/,
//     JSON hub protocol), the data-plane REST API (v1 and 2022-06-01
//     routes, access-key JWT), the app negotiate endpoint at
//     {negotiate.path}/negotiate, and optionally a static folder at /.
//     ConnectionString gives an Azure-style connection string for it, which
//     publish/signalr and Azure's SDKs accept.
//   - Server.Publisher is the in-process publish.Publisher: batches go
//     straight into the clients' queues, no HTTP.
//   - Negotiator (NewNegotiator) is the app negotiate endpoint on its own,
//     for apps whose clients connect to Azure SignalR: it joins users to
//     their claim-derived groups through the service's REST API.
//
// Ownership: Run (or Serve) owns every connection and returns only after
// all of them are closed; connections accepted through Handler belong to
// it too. Each connection has one read loop, one write loop and a bounded
// send queue: a client that cannot keep up is disconnected, and sends never
// wait for a client. All methods are safe for concurrent use.
//
// Not supported (yet): MessagePack, Server-Sent Events and long polling,
// stateful reconnect, upstream webhooks, and scale-out beyond one node.
package hub
