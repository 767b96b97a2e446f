# rayd: one Makefile for the daemon, its tests and its benchmarks.
#
#   make run            install missing Debian packages, build, serve on :8080
#   make test           install, build, run every unit and API test
#   make test SANITIZE=1            the same under AddressSanitizer + UBSan
#   make bench          benchmarks (see BENCHMARKS.md)
#   make cluster-test   three nodes in cluster mode behind nginx, with Redis (docs/cluster.md)
#   make install        rayd into $(PREFIX)/bin, the module header into $(PREFIX)/include/rayd
#
# Variables (override on the command line):
CC       ?= gcc
# SANITIZE=1 (address,undefined), or a list for -fsanitize=, e.g. SANITIZE=thread
SANITIZE ?=
# Optimisation and debug flags
OPT      ?= -O2 -g
# Where objects and binaries go; sanitized builds get their own folder.
ifeq ($(SANITIZE),)
BUILD    ?= build
else
ifeq ($(SANITIZE),1)
override SANITIZE := address,undefined
endif
BUILD    ?= build/san-$(subst $(comma),-,$(SANITIZE))
endif
comma := ,
# Arguments for `make run`
RUN_ARGS ?=
# Where `make install` puts things: $(DESTDIR)$(PREFIX)/bin/rayd and
# $(DESTDIR)$(PREFIX)/include/rayd/rayd_module.h (DESTDIR: a staging root for packagers)
PREFIX   ?= /usr/local
DESTDIR  ?=

DEB_PACKAGES := build-essential pkg-config libmicrohttpd-dev libjansson-dev \
                libcurl4-openssl-dev libhiredis-dev libcmocka-dev libjemalloc-dev python3-yaml \
                curl jq wrk python3 python3-numpy nodejs

WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wno-unused-parameter -Wno-missing-field-initializers -Wformat=2 -Wvla
CFLAGS  += -std=gnu11 $(OPT) $(WARN) -pthread -MMD -MP -I. -D_GNU_SOURCE
LDLIBS  += -pthread -lm -ldl
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif
# The daemon's allocator: jemalloc (service/allocator.c says why), except under sanitizers,
# which bring their own. ALLOCATOR=glibc builds without it.
ifeq ($(SANITIZE),)
ALLOCATOR ?= jemalloc
else
ALLOCATOR := glibc
endif
ifeq ($(ALLOCATOR),jemalloc)
CFLAGS     += -DRAYD_JEMALLOC
RAYD_LIBS  := -ljemalloc
endif

PKGS        := libmicrohttpd jansson libcurl hiredis
PKG_CFLAGS   = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
PKG_LIBS     = $(shell pkg-config --libs $(PKGS) 2>/dev/null)
# What runtime/ links (no HTTP server): runtime unit tests link only these.
RUNTIME_LIBS = $(shell pkg-config --libs jansson libcurl hiredis 2>/dev/null)

RUNTIME_SRC := $(wildcard runtime/*.c)
API_SRC     := $(wildcard api/*.c)
SERVICE_SRC := $(wildcard service/*.c)
RUNTIME_OBJ := $(RUNTIME_SRC:%.c=$(BUILD)/%.o)
API_OBJ     := $(API_SRC:%.c=$(BUILD)/%.o) $(BUILD)/gen/openapi_spec.o $(BUILD)/gen/dashboard_files.o
DASHBOARD_FILES := dashboard/index.html dashboard/app.js dashboard/style.css
SERVICE_OBJ := $(SERVICE_SRC:%.c=$(BUILD)/%.o)

UNIT_SRC    := $(wildcard tests/unit/*/*.c)
UNIT_BIN    := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/unit/%)
API_TEST_SUPPORT := $(wildcard tests/api/support/*.c)
API_TEST_SRC := $(wildcard tests/api/test_*.c)
API_TEST_BIN := $(API_TEST_SRC:tests/api/%.c=$(BUILD)/tests/api/%)
CLUSTER_TEST_SRC := $(wildcard tests/cluster/test_*.c)
CLUSTER_TEST_BIN := $(CLUSTER_TEST_SRC:tests/cluster/%.c=$(BUILD)/tests/cluster/%)

.PHONY: all run test unit api-test clients-test dashboard-test deps bench clean spec-lint format image-test lb-demo fuzz soak contract-test valgrind cluster-test \
        install uninstall
.DEFAULT_GOAL := all

all: $(BUILD)/rayd

# Installs the Debian packages given that are missing (as root, from Debian's mirror).
define install_missing
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
endef

# The packages the build and tests need.
deps:
	$(call install_missing,$(DEB_PACKAGES))

run: deps
	$(MAKE) all
	$(BUILD)/rayd $(RUN_ARGS)

# The daemon on the PATH, and the one header C modules compile against.
install: $(BUILD)/rayd
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/include/rayd
	install -m 755 $(BUILD)/rayd $(DESTDIR)$(PREFIX)/bin/rayd
	install -m 644 runtime/rayd_module.h $(DESTDIR)$(PREFIX)/include/rayd/rayd_module.h

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/rayd $(DESTDIR)$(PREFIX)/include/rayd/rayd_module.h
	-rmdir $(DESTDIR)$(PREFIX)/include/rayd 2>/dev/null

$(BUILD)/librayd_runtime.a: $(RUNTIME_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BUILD)/librayd_api.a: $(API_OBJ)
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

$(BUILD)/rayd: $(SERVICE_OBJ) $(BUILD)/librayd_api.a $(BUILD)/librayd_runtime.a
	$(CC) $(LDFLAGS) -o $@ $^ $(PKG_LIBS) $(RAYD_LIBS) $(LDLIBS)

# The OpenAPI document is compiled into the binary, which serves it.
$(BUILD)/gen/openapi_spec.c: openapi/openapi.yaml openapi/embed.py
	@mkdir -p $(@D)
	/usr/bin/python3 openapi/embed.py $< $@

$(BUILD)/gen/openapi_spec.o: $(BUILD)/gen/openapi_spec.c
	$(CC) $(CFLAGS) -c -o $@ $<

# The dashboard's files are compiled in too (served at /dashboard; no CDN, works offline).
$(BUILD)/gen/dashboard_files.c: $(DASHBOARD_FILES) dashboard/embed.py
	@mkdir -p $(@D)
	/usr/bin/python3 dashboard/embed.py $@ $(DASHBOARD_FILES)

$(BUILD)/gen/dashboard_files.o: $(BUILD)/gen/dashboard_files.c api/dashboard.h
	$(CC) $(CFLAGS) -c -o $@ $<

$(BUILD)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

# Unit tests of api/ link the HTTP layer too (no server is started).
$(BUILD)/tests/unit/api/%: tests/unit/api/%.c $(BUILD)/librayd_api.a $(BUILD)/librayd_runtime.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/librayd_api.a \
	    $(BUILD)/librayd_runtime.a -lcmocka $(PKG_LIBS) $(LDLIBS)

# Unit tests of runtime/ link the runtime only: no HTTP server (libcurl for rt_remote).
$(BUILD)/tests/unit/%: tests/unit/%.c $(BUILD)/librayd_runtime.a
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(BUILD)/librayd_runtime.a \
	    -lcmocka $(RUNTIME_LIBS) $(LDLIBS)

# API tests: libcurl clients against the real server binary.
$(BUILD)/tests/api/%: tests/api/%.c $(API_TEST_SUPPORT) $(BUILD)/rayd
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< $(API_TEST_SUPPORT) \
	    -lcmocka -lcurl -ljansson $(LDLIBS)

# Cluster tests: libcurl clients against three nodes that tests/cluster/run.sh starts.
$(BUILD)/tests/cluster/%: tests/cluster/%.c tests/cluster/cluster_env.c $(API_TEST_SUPPORT) \
                          $(BUILD)/rayd
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(PKG_CFLAGS) $(LDFLAGS) -o $@ $< tests/cluster/cluster_env.c \
	    $(API_TEST_SUPPORT) -lcmocka -lcurl -ljansson $(LDLIBS)

# Every test binary runs even when an earlier one fails; the summary line counts them.
unit: $(UNIT_BIN)
	@tests/run_all.sh $(UNIT_BIN)

api-test: $(API_TEST_BIN) $(BUILD)/rayd
	@RAYD_BIN=$(BUILD)/rayd tests/run_all.sh $(API_TEST_BIN) tests/check_docs.sh

# The client libraries' own tests (clients/python with /usr/bin/python3's unittest,
# clients/js with node --test), each against a live rayd they start.
clients-test: $(BUILD)/rayd
	$(call install_missing,python3 python3-numpy nodejs)
	@RAYD_BIN=$(BUILD)/rayd tests/run_all.sh clients/python/run_tests.sh clients/js/run_tests.sh

# The dashboard in Debian's chromium driven by playwright-core (tests/dashboard/run.sh),
# against one rayd and two in cluster mode (with a redis-server); screenshots in
# $(BUILD)/dashboard/.
dashboard-test: $(BUILD)/rayd
	$(call install_missing,chromium nodejs redis-server redis-tools)
	@# npm: Debian's own package, unless the nodejs installed brings it (NodeSource's does)
	@command -v npm >/dev/null || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm; }
	@BUILD=$(BUILD) RAYD_BIN=$(BUILD)/rayd tests/dashboard/run.sh

# Unit, API and client tests all run even when one fails; make test fails if any did.
test: deps
	@$(MAKE) --no-print-directory unit; u=$$?; \
	$(MAKE) --no-print-directory api-test; a=$$?; \
	$(MAKE) --no-print-directory clients-test; c=$$?; \
	[ $$u -eq 0 ] && [ $$a -eq 0 ] && [ $$c -eq 0 ]

bench: deps
	$(call install_missing,redis-server redis-tools valgrind python3)
	$(MAKE) all
	tests/bench/run.sh

# Cluster mode: redis-server, three rayd in cluster mode and nginx on loopback, started
# and stopped by tests/cluster/run.sh around the tests in tests/cluster/; then again
# around the API tests, run through nginx (--api; tests/cluster/api_node_local.txt).
cluster-test: deps
	$(call install_missing,redis-server redis-tools nginx)
	$(MAKE) --no-print-directory $(BUILD)/rayd $(CLUSTER_TEST_BIN) $(API_TEST_BIN) examples
	BUILD=$(BUILD) RAYD_BIN=$(BUILD)/rayd tests/cluster/run.sh
	BUILD=$(BUILD) RAYD_BIN=$(BUILD)/rayd tests/cluster/run.sh --api

# The real docker/Dockerfile built and run with podman (see tests/container/image_test.sh).
image-test:
	tests/container/image_test.sh

# Three rayd behind a real nginx on loopback, with docker/nginx.conf's shape.
lb-demo: all
	RAYD_BIN=$(BUILD)/rayd tests/lb/lb_demo.sh

spec-lint:
	openapi/lint.sh

# Every API test response checked against the spec, then spec-driven generated requests.
# CONTRACT_RECORDED=<file>: check responses an earlier run recorded (RAYD_CONTRACT_LOG).
contract-test: $(API_TEST_BIN) $(BUILD)/rayd examples
	BUILD=$(BUILD) RAYD_BIN=$(BUILD)/rayd API_TEST_BIN="$(API_TEST_BIN)" \
	    CONTRACT_RECORDED="$(CONTRACT_RECORDED)" tests/contract/run.sh

# rayd under valgrind memcheck while API tests drive it: no errors, no definite leaks,
# clean exits. BUILD must be an unsanitized build.
VALGRIND_TESTS := objects tasks actors service long_poll bad_input config remote limits \
                  idempotency actor_stress reload
valgrind: $(BUILD)/rayd $(VALGRIND_TESTS:%=$(BUILD)/tests/api/test_%)
	@BUILD=$(BUILD) tests/valgrind/run.sh $(VALGRIND_TESTS:%=test_%)

# libFuzzer harnesses (clang): make fuzz FUZZ_SECONDS=N runs each harness N seconds,
# after replaying every kept regression input.
FUZZ_SECONDS ?= 10
fuzz: deps
	$(call install_missing,clang libclang-rt-14-dev)
	FUZZ_SECONDS=$(FUZZ_SECONDS) tests/fuzz/run.sh

# Mixed load with faults for SOAK_SECONDS (default 60), loopback only; see BENCHMARKS.md.
SOAK_SECONDS ?= 60
soak: all
	SOAK_SECONDS=$(SOAK_SECONDS) tests/soak/run.sh

format:
	clang-format -i $(RUNTIME_SRC) $(API_SRC) $(SERVICE_SRC) runtime/*.h api/*.h service/*.h

clean:
	rm -rf build

-include $(RUNTIME_OBJ:.o=.d) $(API_OBJ:.o=.d) $(SERVICE_OBJ:.o=.d) $(UNIT_BIN:=.d) \
         $(API_TEST_BIN:=.d) $(CLUSTER_TEST_BIN:=.d)

# ---- C modules: examples/modules/*.c -> $(BUILD)/examples/modules/*.so ----------------------
# Modules include runtime/rayd_module.h only; rayd exports nothing (no -rdynamic needed).
EXAMPLE_MODULES := $(patsubst %.c,$(BUILD)/%.so,$(wildcard examples/modules/*.c))

.PHONY: examples
examples: $(EXAMPLE_MODULES)

$(BUILD)/examples/modules/%.so: examples/modules/%.c
	@mkdir -p $(@D)
	$(CC) -shared -fPIC $(CFLAGS) $(PKG_CFLAGS) -o $@ $<

# tests/api/test_modules.c loads them.
api-test: examples

-include $(EXAMPLE_MODULES:.so=.d)
# ---- end of C modules ----------------------------------------------------------------------
