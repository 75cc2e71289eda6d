# syntax=docker/dockerfile:1
# persistd image: built with the same commands as the README (scripts/install-deps, meson),
# run on slim Debian 12 as a non-root user with only the runtime libraries.

FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN scripts/install-deps \
 && meson setup build -Dtests=false --buildtype=release --prefix=/usr \
 && meson compile -C build \
 && DESTDIR=/out meson install -C build

FROM debian:12-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
        ca-certificates \
        libcjson1 \
        libcurl4 \
        libhiredis0.14 \
        libmicrohttpd12 \
        libpq5 \
        libyaml-0-2 \
        tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --no-create-home --shell /usr/sbin/nologin persistd
COPY --from=build /out/usr/bin/persistd /out/usr/bin/persistctl /usr/bin/
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/bin/persistd"]
CMD ["run", "-c", "/etc/persistd/persistd.yaml"]
