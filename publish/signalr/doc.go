// Package signalr talks to the data-plane REST API of Azure SignalR Service
// (serverless mode), and equally to changecast's built-in hub, which serves
// the same API.
//
// Use New with a connection string to get a Publisher (publish.Publisher):
// each Publish is one REST call to the batch's hub, group or user. Use
// NewClient, or Publisher.Client, for group membership (AddUserToGroup …),
// connection management and client tokens (ClientURL, ClientToken), which
// the app negotiate endpoint in publish/hub needs for either target.
//
// Connection strings follow the Azure SDK rules (ParseConnectionString):
// Endpoint, Port, AccessKey, ClientEndpoint, ServerEndpoint, Version, and
// AuthType=azure for Microsoft Entra ID (DefaultAzureCredential, scope
// https://signalr.azure.com/.default).
//
// Nothing here retries or starts goroutines: errors are classified
// (publish.Retryable with the service's Retry-After, publish.TooLarge,
// publish.Permanent) and the caller retries. Client and Publisher are safe
// for concurrent use.
package signalr
