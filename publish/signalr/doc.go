// Package signalr talks to the data-plane REST API of Azure SignalR Service
// (serverless mode), and equally to changecast's built-in hub
// (publish/hub), which serves the same API.
//
// # Where to start
//
// Call New with a connection string to get a Publisher
// (publish.Publisher): each Publish is one REST call to the batch's hub,
// group or user. Publisher.Client, or NewClient, gives the Client behind
// it, for group membership (AddUserToGroup …), connection management and
// client tokens (ClientURL, ClientToken). A *Client is what
// hub.NewNegotiator takes as its hub.Service to run the app negotiate
// endpoint for Azure SignalR. SignAccessToken signs access-key tokens for
// callers that need their own (load clients, tests).
//
// Connection strings follow the Azure SDK rules (ParseConnectionString):
// Endpoint, Port, AccessKey, ClientEndpoint, ServerEndpoint, Version, and
// AuthType=azure for Microsoft Entra ID (DefaultAzureCredential, scope
// https://signalr.azure.com/.default).
//
// Nothing here retries or starts goroutines: errors are classified
// (publish.Retryable with the service's Retry-After, publish.TooLarge,
// publish.Permanent) and the caller retries. Client and Publisher are safe
// for concurrent use. The package depends on nothing of publish/hub.
package signalr
