//! paddock-api: the /v1 wire types and the Unix-socket client.
