# syntax=docker/dockerfile:1
# Multi-stage build: a static binary (no cgo) in a distroless, non-root image.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/changecast ./cmd/changecast

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/changecast /usr/local/bin/changecast
USER 65532:65532
# 8080: the built-in hub; 9090: /healthz, /readyz, /metrics (server.listen)
EXPOSE 8080 9090
ENTRYPOINT ["/usr/local/bin/changecast"]
CMD ["run", "-c", "/etc/changecast/changecast.yaml"]
