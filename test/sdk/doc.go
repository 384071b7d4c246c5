// Package sdk holds tests that run official SDKs other than Go's (the
// Azure Cosmos DB JavaScript SDK) against changecast's emulators.
package sdk
