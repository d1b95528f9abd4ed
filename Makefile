# carevault - top-level entry points. CMake + CTest do the building and unit
# testing; scripts/ hold the steps around them.
#   make run    install what is missing, build, init ./data on first run, serve https://localhost:8443
#   make test   install what is missing, build with ASan+UBSan, run unit, end-to-end and fuzz smoke tests
#   make bench  benchmarks against nginx and of the audit trail, results in docs/BENCHMARKS.md
#   make fuzz   run every fuzz target for a long time (FUZZ_SECONDS each, default 600)

BUILD      ?= build
JOBS       ?= $(shell nproc)
DATA       ?= data
LISTEN     ?= 127.0.0.1:8443

.PHONY: all deps build run test bench fuzz model clean

all: build

deps:
	@scripts/deps all

build:
	@scripts/deps build
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@if [ ! -f $(DATA)/master.key ]; then $(BUILD)/carevault init --data $(DATA); fi
	@echo "serving https://localhost:8443/fhir  (stop with Ctrl-C)"
	@if [ -f $(DATA)/bootstrap-token ]; then \
	  echo "first run: create the first administrator (prints the TOTP enrolment for an authenticator app once;"; \
	  echo "this retires the bootstrap token $(DATA)/bootstrap-token):"; \
	  echo "  $(BUILD)/carevault user add --data $(DATA) --username admin --role admin --password-stdin --qr admin-mfa.svg"; \
	  echo "until then the bootstrap token reaches the API:"; \
	  echo "  curl --cacert $(DATA)/tls/cert.pem -H \"Authorization: Bearer \$$(cat $(DATA)/bootstrap-token)\" https://localhost:8443/fhir/Patient"; \
	 fi
	@echo "log in as an administrator (password, then the 6-digit code):"
	@echo "  curl --cacert $(DATA)/tls/cert.pem -c jar -H 'Content-Type: application/json' -d '{\"username\":\"admin\",\"password\":\"...\",\"code\":\"123456\"}' https://localhost:8443/auth/login"
	@echo "scripts and imports: a backend client (docs/OPERATIONS.md), e.g."
	@echo "  $(BUILD)/carevault client add --data $(DATA) --name import --type backend --jwks-file keys.json --scope 'system/*.cruds'"
	@exec $(BUILD)/carevault serve --data $(DATA) --listen $(LISTEN)

test: deps
	@scripts/test

bench: deps build
	@bench/run.sh

fuzz: deps
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-600} scripts/fuzz

model:
	python3 tools/gen-model.py

clean:
	rm -rf build build-san build-fuzz build-noaudit
