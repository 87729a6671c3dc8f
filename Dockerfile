# syntax=docker/dockerfile:1
# Multi-stage: build static binaries (the same way scripts/build-static does, which CI runs), then
# ship them alone in a distroless, non-root image. The gateway checks its own health.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN ./scripts/build-static /out "$VERSION"

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/gateway /usr/local/bin/gateway
COPY --from=build /out/inboxhub-sim /usr/local/bin/inboxhub-sim
USER nonroot:nonroot
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 CMD ["/usr/local/bin/gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/gateway"]
