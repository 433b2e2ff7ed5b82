# sfp -- one non-recursive Makefile.
#
#   make              build build/bin/sfp (and later sfp-worker, sfpd)
#   make check        install deps, build and run every test (CUnit, CLI, brief fuzzing)
#   make demo         install deps, run the main job
#   make bench        benchmarks against named peers, side by side
#   make bench-dist   distributed gradient exchange against MPI, casts, PyTorch DDP
#   make bench-daemon sfpd under 256 simulated workers and HTTP load
#   make fuzz         run every fuzz target for FUZZ_SECONDS each
#   make faults       the fault suite, TRIALS (5) trials of every fault (docs/reliability.md)
#   make deps         install the Debian packages the project needs
#   make check-deploy the deploy kit's tests alone (Slurm, systemd, Prometheus, Grafana)
#   make install      sfp, sfp-bench, sfp-worker, sfpd into $(PREFIX)/bin (/usr/local),
#                     the Python module sfp into $(PREFIX)/lib/python3.X/dist-packages
#   make python       the Python module alone: build/python/sfp (import sfp)
#
# Quiet unless V=1. SANITIZE=address,undefined builds everything with those
# sanitizers under build/san/ instead of build/.

.DELETE_ON_ERROR:
.SECONDARY:
.SUFFIXES:
.DEFAULT_GOAL := all

V ?= 0
Q := $(if $(filter 1,$(V)),,@)
say = $(if $(filter 1,$(V)),,@printf '  %-7s %s\n' $(1) $(2);)

CC ?= gcc
ifeq ($(origin CC),default)
CC := gcc
endif
CLANG ?= clang

SANITIZE ?=
ifeq ($(SANITIZE),)
BUILD ?= build
SAN_FLAGS :=
else
BUILD ?= build/san
SAN_FLAGS := -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
endif

OPT ?= -O2
WERROR ?=
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter \
	-Wvla -Wformat=2 $(if $(WERROR),-Werror)
# Open MPI's flags come from its wrapper (empty until deploy/install-deps.sh ran)
MPI_CPPFLAGS := $(shell mpicc --showme:compile 2>/dev/null)
MPI_LIBS := $(shell mpicc --showme:link 2>/dev/null)
CPPFLAGS := -I. -Iinclude -Ilib -I$(BUILD)/gen -D_DEFAULT_SOURCE -D_POSIX_C_SOURCE=200809L $(MPI_CPPFLAGS)
CFLAGS := -std=c11 $(OPT) -g $(WARN) -fno-strict-aliasing -fopenmp $(SAN_FLAGS) -MMD -MP $(EXTRA_CFLAGS)
LDFLAGS := -fopenmp $(SAN_FLAGS) $(EXTRA_LDFLAGS)
LDLIBS := -lnng -lprotobuf-c -lhttp_parser $(MPI_LIBS) -lyaml -lz -lm -ldl -lpthread

# Files named *_avx2.c / *_avx512.c hold the SIMD kernels; they are compiled
# for that ISA and only called after a run-time CPU check.
ISA_AVX2 := -mavx2 -mbmi -mbmi2 -mfma -mlzcnt -mpopcnt
ISA_AVX512 := $(ISA_AVX2) -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512cd \
	-mavx512vbmi -mavx512vbmi2 -mavx512bitalg -mavx512vpopcntdq
ISA_SSE42 := -msse4.2 -mpclmul

# ---- the library -----------------------------------------------------------
# proto/sfp.proto -> $(BUILD)/gen/proto/sfp.pb-c.{c,h} (protoc-c), part of the library
PROTO_GEN := $(BUILD)/gen/proto/sfp.pb-c.c
$(BUILD)/gen/proto/sfp.pb-c.c $(BUILD)/gen/proto/sfp.pb-c.h &: proto/sfp.proto
	@mkdir -p $(@D)
	$(call say,PROTOC,$<)protoc-c --proto_path=proto --c_out=$(@D) $<
$(BUILD)/gen/proto/sfp.pb-c.o: $(BUILD)/gen/proto/sfp.pb-c.c
	$(call say,CC,$<)$(CC) $(CPPFLAGS) $(CFLAGS) -Wno-missing-prototypes -c $< -o $@

LIB_SRC := $(sort $(wildcard lib/*/*.c))
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/obj/%.o) $(PROTO_GEN:.c=.o)
LIBSFP := $(BUILD)/lib/libsfp.a

$(BUILD)/obj/%_avx2.o: ISA := $(ISA_AVX2)
$(BUILD)/obj/%_avx512.o: ISA := $(ISA_AVX512)
# the layer loops are written for the vectoriser; -O3 turns it fully on
$(BUILD)/obj/lib/nn/%.o: XOPT := -O3
$(BUILD)/obj/%_sse42.o: ISA := $(ISA_SSE42)

$(BUILD)/obj/%.o: %.c | $(BUILD)/gen/proto/sfp.pb-c.h
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(CPPFLAGS) $(CFLAGS) $(ISA) $(XOPT) -c $< -o $@

$(LIBSFP): $(LIB_OBJ)
	@mkdir -p $(@D)
	$(call say,AR,$@)rm -f $@ && ar rcs $@ $^

# ---- the sfp tool (tools/) and the benchmarks it runs (bench/) -------------
# `sfp bench VERB` execs sfp-bench from sfp's folder: only sfp-bench links
# the peer codecs, so sfp runs without them installed.
PEER_LIBS := -lzstd -llz4 -lblosc -lzfp -lfpzip
TOOL_SRC := $(sort $(wildcard tools/*.c))
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/obj/%.o)
SFP := $(BUILD)/bin/sfp
BENCH_SRC := $(sort $(wildcard bench/*.c))
BENCH_OBJ := $(BENCH_SRC:%.c=$(BUILD)/obj/%.o)
SFP_BENCH := $(BUILD)/bin/sfp-bench

$(SFP): $(TOOL_OBJ) $(LIBSFP)
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(LIBSFP) $(LDLIBS)

$(SFP_BENCH): $(BENCH_OBJ) $(LIBSFP)
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(LIBSFP) $(PEER_LIBS) $(LDLIBS)

# ---- the worker and the daemon (built once their sources exist) ------------
WORKER_SRC := $(sort $(wildcard worker/*.c))
DAEMON_SRC := $(sort $(wildcard daemon/*.c))
BINS := $(SFP) $(SFP_BENCH)
ifneq ($(WORKER_SRC),)
BINS += $(BUILD)/bin/sfp-worker
$(BUILD)/bin/sfp-worker: $(WORKER_SRC:%.c=$(BUILD)/obj/%.o) $(LIBSFP)
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
endif
ifneq ($(DAEMON_SRC),)
BINS += $(BUILD)/bin/sfpd
$(BUILD)/bin/sfpd: $(DAEMON_SRC:%.c=$(BUILD)/obj/%.o) $(BUILD)/obj/build/gen/assets.o $(LIBSFP)
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ -luv $(LDLIBS)
endif

# ---- sfpd's live page: daemon/web/ and uPlot, embedded into the binary ------
# uPlot comes from npm at build time (the version and integrity pinned in
# daemon/web/package-lock.json) into build/npm/, shared by every build
# variant; tools/embed.sh turns the files into C arrays. Without npm the
# build stops here rather than make a page without plots.
NPM_DIR := build/npm
UPLOT_DIST := $(NPM_DIR)/node_modules/uplot/dist
WEB_ASSETS := / 'text/html;charset=utf-8' daemon/web/index.html \
	/sfpd.js 'text/javascript;charset=utf-8' daemon/web/sfpd.js \
	/sfpd.css 'text/css;charset=utf-8' daemon/web/sfpd.css \
	/uplot.min.js 'text/javascript;charset=utf-8' $(UPLOT_DIST)/uPlot.iife.min.js \
	/uplot.min.css 'text/css;charset=utf-8' $(UPLOT_DIST)/uPlot.min.css

$(NPM_DIR)/.installed: daemon/web/package.json daemon/web/package-lock.json
	@command -v npm >/dev/null 2>&1 || { echo "error: npm not found: sfpd's live page embeds uPlot" \
		"from npm at build time; run deploy/install-deps.sh (it installs npm)" >&2; exit 1; }
	@mkdir -p $(@D)
	$(Q)cp daemon/web/package.json daemon/web/package-lock.json $(NPM_DIR)/
	$(call say,NPM,uplot)cd $(NPM_DIR) && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error \
		>npm.log 2>&1 || { cat npm.log >&2; echo "error: npm ci failed (log above): sfpd's" \
		"live page needs uPlot from the npm registry" >&2; exit 1; }
	@touch $@

build/gen/assets.c: tools/embed.sh $(filter daemon/web/%,$(WEB_ASSETS)) $(NPM_DIR)/.installed
	@mkdir -p $(@D)
	$(call say,EMBED,$@)tools/embed.sh $@ $(WEB_ASSETS)

# ---- example plug-in layers (examples/plugins/*.c -> build/plugins/*.so) -----
PLUGIN_SRC := $(sort $(wildcard examples/plugins/*.c))
PLUGINS := $(PLUGIN_SRC:examples/plugins/%.c=$(BUILD)/plugins/%.so)

$(BUILD)/plugins/%.so: examples/plugins/%.c include/sfp/plugin.h
	@mkdir -p $(@D)
	$(call say,CC,$@)$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -shared -o $@ $< -lm

# ---- the Python module (python/): `import sfp` with PYTHONPATH=build/python --
# A CPython extension in C over the library (python/*.c -> sfp/_sfp*.so) and
# the package around it (python/sfp/*.py), for Debian's /usr/bin/python3 and
# its headers (python3-dev). The extension needs the library's objects as
# position-independent code: the modules it calls are compiled once more
# under $(BUILD)/pic/ (the archive's symbols stay hidden in the .so).
PYTHON ?= /usr/bin/python3
PY_CFLAGS := $(shell $(PYTHON)-config --includes 2>/dev/null)
PY_EXT := $(shell $(PYTHON)-config --extension-suffix 2>/dev/null)
PY_VER := $(shell $(PYTHON) -c 'import sys; print("python%d.%d" % sys.version_info[:2])' 2>/dev/null)
PY_LIB_SRC := $(sort $(wildcard lib/common/*.c lib/codec/*.c lib/coord/*.c lib/transport/*.c \
	lib/quant/*.c))
PY_LIB_OBJ := $(PY_LIB_SRC:%.c=$(BUILD)/pic/%.o) $(BUILD)/pic/gen/sfp.pb-c.o
PY_SRC := $(sort $(wildcard python/*.c))
PY_OBJ := $(PY_SRC:%.c=$(BUILD)/pic/%.o)
PY_FILES := $(patsubst python/%,$(BUILD)/python/%,$(sort $(wildcard python/sfp/*.py)))
PY_MOD := $(BUILD)/python/sfp/_sfp$(PY_EXT)

$(BUILD)/pic/%_avx2.o: ISA := $(ISA_AVX2)
$(BUILD)/pic/%_avx512.o: ISA := $(ISA_AVX512)
$(BUILD)/pic/%_sse42.o: ISA := $(ISA_SSE42)
$(BUILD)/pic/python/%.o: python/%.c | $(BUILD)/gen/proto/sfp.pb-c.h
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(CPPFLAGS) $(PY_CFLAGS) $(CFLAGS) -fPIC -fvisibility=hidden -c $< -o $@
$(BUILD)/pic/gen/sfp.pb-c.o: $(BUILD)/gen/proto/sfp.pb-c.c
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC -Wno-missing-prototypes -c $< -o $@
$(BUILD)/pic/%.o: %.c | $(BUILD)/gen/proto/sfp.pb-c.h
	@mkdir -p $(@D)
	$(call say,CC,$<)$(CC) $(CPPFLAGS) $(CFLAGS) -fPIC $(ISA) -c $< -o $@
$(BUILD)/pic/libsfp.a: $(PY_LIB_OBJ)
	$(call say,AR,$@)rm -f $@ && ar rcs $@ $^
$(PY_MOD): $(PY_OBJ) $(BUILD)/pic/libsfp.a
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) -shared $(LDFLAGS) -Wl,--exclude-libs,ALL -o $@ $^ \
		-lnng -lprotobuf-c -lm -lpthread
$(BUILD)/python/sfp/%.py: python/sfp/%.py
	@mkdir -p $(@D)
	$(Q)cp $< $@

ifneq ($(PY_EXT),)
python: $(PY_MOD) $(PY_FILES)
else
python:
	@echo "error: $(PYTHON)-config not found: the Python module needs python3-dev" \
		"(deploy/install-deps.sh installs it)" >&2; exit 1
endif

all: $(BINS) $(PLUGINS) $(if $(PY_EXT),python)

# ---- tests: tests/test_<module>.c, each its own CUnit binary ----------------
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_UTIL_SRC := $(sort $(wildcard tests/util/*.c))
TEST_UTIL_OBJ := $(TEST_UTIL_SRC:%.c=$(BUILD)/obj/%.o)
TEST_BINS := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(TEST_UTIL_OBJ) $(LIBSFP)
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ -lcunit $(LDLIBS)

# multi-process programs run under real mpirun by tests/system/dist.sh
MPI_TEST_SRC := $(sort $(wildcard tests/system/*.c))
MPI_TEST_BINS := $(MPI_TEST_SRC:tests/system/%.c=$(BUILD)/tests/system/%)

$(BUILD)/tests/system/%: $(BUILD)/obj/tests/system/%.o $(LIBSFP)
	@mkdir -p $(@D)
	$(call say,LD,$@)$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

tests: $(TEST_BINS) $(MPI_TEST_BINS) $(BINS) $(PLUGINS) $(if $(PY_EXT),python)

# ---- fuzzing (libFuzzer, clang): tests/fuzz/fuzz_<target>.c ------------------
FUZZ_SRC := $(sort $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BINS := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)
FUZZ_FLAGS := -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1 -DSFP_NO_CLONES
FUZZ_LIB_OBJ := $(LIB_SRC:%.c=build/fuzz/obj/%.o) build/fuzz/obj/gen/sfp.pb-c.o
FUZZ_SECONDS ?= 60

build/fuzz/obj/%_avx2.o: ISA := $(ISA_AVX2)
build/fuzz/obj/%_avx512.o: ISA := $(ISA_AVX512)
build/fuzz/obj/%_sse42.o: ISA := $(ISA_SSE42)
build/fuzz/obj/%.o: %.c | build/gen/proto/sfp.pb-c.h
	@mkdir -p $(@D)
	$(call say,CLANG,$<)$(CLANG) $(CPPFLAGS) -std=c11 -Wall -MMD -MP \
		-fsanitize=fuzzer-no-link,address,undefined -g -O1 -DSFP_NO_CLONES $(ISA) -c $< -o $@
build/fuzz/obj/gen/sfp.pb-c.o: build/gen/proto/sfp.pb-c.c
	@mkdir -p $(@D)
	$(call say,CLANG,$<)$(CLANG) $(CPPFLAGS) -std=c11 -fsanitize=fuzzer-no-link,address,undefined -g -O1 -c $< -o $@
build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_LIB_OBJ)
	@mkdir -p $(@D)
	$(call say,CLANG,$@)$(CLANG) $(CPPFLAGS) -std=c11 $(FUZZ_FLAGS) -o $@ $^ $(LDLIBS)

fuzz-build: $(FUZZ_BINS)
fuzz: $(FUZZ_BINS)
	$(Q)FUZZ_SECONDS=$(FUZZ_SECONDS) tests/run-fuzz.sh $(FUZZ_BINS)

# ---- entry points ------------------------------------------------------------
deps:
	$(Q)deploy/install-deps.sh

# `make check` and `make demo` first install what they need (idempotent, quick
# when everything is there), then build and run in a second make so that the
# build sees the installed headers.
check:
	$(Q)deploy/install-deps.sh
	$(Q)$(MAKE) --no-print-directory check-run

check-run: tests fuzz-build
	$(Q)BUILD=$(BUILD) tests/run-all.sh $(TEST_BINS)

# The suites and CLI tests under ASan + UBSan (the fuzz targets already run
# with both sanitizers in `make check`).
check-asan:
	$(Q)$(MAKE) --no-print-directory SANITIZE=address,undefined tests
	$(Q)BUILD=build/san SFP_SKIP_FUZZ=1 LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
		tests/run-all.sh $(TEST_BINS:$(BUILD)/%=build/san/%)

# The fault suite: real mpirun, sfpd, files, a full tmpfs, rehearsed links
# (tests/faults/, docs/reliability.md); `make check` runs one trial of each.
TRIALS ?= 5
faults:
	$(Q)deploy/install-deps.sh
	$(Q)$(MAKE) --no-print-directory faults-run

faults-run: tests
	$(Q)BUILD=$(BUILD) TRIALS=$(TRIALS) tests/faults/run.sh

demo:
	$(Q)deploy/install-deps.sh
	$(Q)$(MAKE) --no-print-directory demo-run

demo-run: $(BINS)
	$(Q)tools/demo.sh $(BUILD)

bench:
	$(Q)deploy/install-deps.sh --bench
	$(Q)$(MAKE) --no-print-directory bench-run

bench-run: $(BINS)
	$(Q)BUILD=$(BUILD) bench/train.sh
	$(Q)$(SFP) bench codec
	$(Q)$(SFP) bench gecko
	$(Q)$(SFP) bench refine

# distributed: gradient exchange against MPI_Allreduce, casts and PyTorch DDP
bench-dist:
	$(Q)deploy/install-deps.sh --bench
	$(Q)$(MAKE) --no-print-directory bench-dist-run

bench-dist-run: $(BINS)
	$(Q)BUILD=$(BUILD) bench/dist.sh

# sfpd under load: simulated workers over the worker protocol plus HTTP (wrk)
bench-daemon:
	$(Q)deploy/install-deps.sh --bench
	$(Q)$(MAKE) --no-print-directory bench-daemon-run

bench-daemon-run: $(BINS)
	$(Q)BUILD=$(BUILD) bench/daemon.sh

# the deploy kit alone (also part of `make check`): the Slurm templates on a
# one-node cluster, the systemd unit, the Prometheus and Grafana files
check-deploy: $(BINS)
	$(Q)f=0; for t in tests/system/deploy.sh tests/system/slurm.sh; do \
		echo "=== $$t"; BUILD=$(BUILD) sh $$t || f=1; done; exit $$f

# the programs into $(DESTDIR)$(PREFIX)/bin, where deploy/systemd/sfpd.service
# and deploy/slurm/ look for them
PREFIX ?= /usr/local
install: $(BINS) $(if $(PY_EXT),python)
	$(call say,INSTALL,$(DESTDIR)$(PREFIX)/bin)install -d $(DESTDIR)$(PREFIX)/bin && \
		install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	$(if $(PY_EXT),$(call say,INSTALL,$(DESTDIR)$(PREFIX)/lib/$(PY_VER)/dist-packages/sfp)install -d \
		$(DESTDIR)$(PREFIX)/lib/$(PY_VER)/dist-packages/sfp && install -m 644 $(PY_FILES) $(PY_MOD) \
		$(DESTDIR)$(PREFIX)/lib/$(PY_VER)/dist-packages/sfp/)

clean:
	rm -rf build

.PHONY: all python tests check check-run check-asan check-deploy install faults faults-run demo demo-run \
	bench bench-run bench-dist bench-dist-run bench-daemon bench-daemon-run fuzz fuzz-build deps clean

-include $(LIB_OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(BENCH_OBJ:.o=.d) $(DAEMON_SRC:%.c=$(BUILD)/obj/%.d) $(BUILD)/obj/build/gen/assets.d $(MPI_TEST_SRC:%.c=$(BUILD)/obj/%.d) $(TEST_UTIL_OBJ:.o=.d) $(TEST_SRC:%.c=$(BUILD)/obj/%.d) $(FUZZ_LIB_OBJ:.o=.d) \
	$(WORKER_SRC:%.c=$(BUILD)/obj/%.d) \
	$(PY_LIB_OBJ:.o=.d) $(PY_OBJ:.o=.d)
