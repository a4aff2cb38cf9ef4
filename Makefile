# judgeq — build, test, install.
#
#   make              build everything into build/ (runs `make deps` first)
#   make check        build and run the test suite; ends with "N passed, N failed"
#   make test         what CI runs: the suite, then the suite under ASan + UBSan,
#                     the daemon tests under ThreadSanitizer and a short fuzz
#                     of every target, each stage announced; the last line
#                     "N passed, N failed" adds up every stage
#   make SANITIZE=1 test   the suite under AddressSanitizer + UBSan (build/asan/)
#   make SANITIZE=thread test-daemon   the daemon tests under ThreadSanitizer
#                     (build/tsan/)
#   make deps         install the Debian packages judgeq needs, only if missing
#   make demo         build, then ask judgeqd one long needle-retrieval question
#                     with Judge Q eviction (tools/demo.sh)
#   make models       retrain models/judgeq-recall*.gguf from scratch (~25 min)
#
# Sources are found by wildcard: a new .c file in kernels/, engine/ or client/
# is part of its library without editing this file. Files named *_avx512.c are
# compiled with the AVX-512 flags; everything else is portable C17 and must
# not assume them (the ISA is chosen at run time).

ROOT      := $(abspath .)
MULTIARCH := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
BLAS_DIR  := /usr/lib/$(MULTIARCH)/openblas-pthread

# B is the build directory (override to keep several builds apart).
ifeq ($(SANITIZE),1)
  B        ?= build/asan
  SANFLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
else ifeq ($(SANITIZE),thread)
  B        ?= build/tsan
  SANFLAGS := -fsanitize=thread -fno-omit-frame-pointer
else
  B        ?= build
  SANFLAGS :=
endif

CC       ?= cc
OPT      ?= -O2
CFLAGS   := -std=c17 $(OPT) -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread -fPIC \
            -I$(ROOT)/kernels -I$(ROOT)/engine -I$(ROOT)/client -I$(ROOT)/daemon \
            -I$(ROOT)/$(B)/gen \
            -DJQ_OPENBLAS_PATH='"$(BLAS_DIR)/libopenblas.so.0"' \
            -MMD -MP $(SANFLAGS) $(EXTRA_CFLAGS)
AVX512FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 \
            -mavx512vnni -mfma -mf16c -mbmi2
# OpenBLAS is loaded at run time (kernels/blas.c explains why), not linked.
LDFLAGS  := -pthread $(SANFLAGS)
LIBS     := -ldl $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson) -lm
TEST_LIBS := $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)
PROTOC_LIBS := $(shell pkg-config --libs libprotobuf-c 2>/dev/null || echo -lprotobuf-c)
DAEMON_LIBS := $(shell pkg-config --libs libuv hwloc libsystemd 2>/dev/null || echo -luv -lhwloc -lsystemd) $(PROTOC_LIBS)

# The wire contract: protoc-c generates C into $(B)/gen.
PROTO_C    := $(B)/gen/judgeq.pb-c.c
PROTO_H    := $(B)/gen/judgeq.pb-c.h
PROTO_OBJ  := $(B)/obj/gen/judgeq.pb-c.o

KERNEL_SRC := $(wildcard kernels/*.c)
DAEMON_SRC := $(wildcard daemon/*.c)
# libjudgeq, the client library: libc + protobuf-c only
CLIENTLIB_SRC := $(wildcard client/lib/*.c)
ENGINE_SRC := $(wildcard engine/*.c)
CLI_SRC    := $(wildcard client/*.c)
TEST_SRC   := $(wildcard tests/test_*.c)
TEST_HELPER_SRC := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))
KERNEL_OBJ := $(call obj,$(KERNEL_SRC))
ENGINE_OBJ := $(call obj,$(ENGINE_SRC))
CLI_OBJ    := $(call obj,$(CLI_SRC))
CLI_MAIN   := $(B)/obj/client/judgeq_main.o
CLI_LIBOBJ := $(filter-out $(CLI_MAIN),$(CLI_OBJ))
TEST_HELPER_OBJ := $(call obj,$(TEST_HELPER_SRC))
TEST_BIN   := $(patsubst tests/%.c,$(B)/tests/%,$(TEST_SRC))
DAEMON_OBJ := $(call obj,$(DAEMON_SRC))
DAEMON_MAIN := $(B)/obj/daemon/judgeqd_main.o
DAEMON_LIBOBJ := $(filter-out $(DAEMON_MAIN),$(DAEMON_OBJ))
CLIENTLIB_OBJ := $(call obj,$(CLIENTLIB_SRC))

KERNEL_LIB := $(B)/lib/libjudgeq-kernels.a
ENGINE_LIB := $(B)/lib/libjudgeq-engine.a
CLI_LIB    := $(B)/lib/libjudgeq-cli.a
JUDGEQ     := $(B)/bin/judgeq
DAEMON_LIB := $(B)/lib/libjudgeqd.a
CLIENT_A   := $(B)/lib/libjudgeq.a
CLIENT_SO  := $(B)/lib/libjudgeq.so.0
JUDGEQD    := $(if $(wildcard daemon/judgeqd_main.c),$(B)/bin/judgeqd)

.PHONY: all deps test check test-daemon clean check-format format
all: deps
	@$(MAKE) --no-print-directory build-all

.PHONY: build-all
# The benchmark programs are built with everything else so that a change
# that breaks one fails the build, not the next person who measures.
BENCH_BIN := $(addprefix $(B)/bench/,kernel_bench stream_read insn_throughput \
                 pretrain_bench ar_probe)
build-all: $(JUDGEQ) $(JUDGEQD) $(CLIENT_SO) $(TEST_BIN) $(BENCH_BIN)

# Debian packages the build and the tests need. Installed only when missing;
# as root directly, otherwise through sudo.
DEB_PACKAGES := gcc make pkg-config libopenblas-pthread-dev libjansson-dev \
                libcmocka-dev libuv1-dev libprotobuf-c-dev protobuf-c-compiler \
                libhwloc-dev libsystemd-dev valgrind gnuplot-nox \
                systemd libseccomp-dev clang libclang-rt-dev
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "make deps: installing$$missing"; \
	  if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing >/dev/null 2>&1 || \
	  { $$SUDO apt-get update -q >/dev/null && \
	    $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; } || \
	  { echo "make deps: could not install:$$missing" >&2; exit 1; }; \
	fi

$(PROTO_C) $(PROTO_H): proto/judgeq.proto
	@mkdir -p $(B)/gen
	protoc-c --proto_path=proto --c_out=$(B)/gen proto/judgeq.proto

$(PROTO_OBJ): $(PROTO_C)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Everything may include the generated header, so it exists before any
# object is compiled.
$(KERNEL_OBJ) $(ENGINE_OBJ) $(CLI_OBJ) $(DAEMON_OBJ) $(CLIENTLIB_OBJ) \
$(TEST_HELPER_OBJ) $(patsubst tests/%.c,$(B)/obj/tests/%.o,$(TEST_SRC)): | $(PROTO_H)

$(B)/obj/%_avx512.o: %_avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512FLAGS) -c $< -o $@

$(B)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(KERNEL_LIB): $(KERNEL_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(ENGINE_LIB): $(ENGINE_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(CLI_LIB): $(CLI_LIBOBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(DAEMON_LIB): $(DAEMON_LIBOBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(CLIENT_A): $(CLIENTLIB_OBJ) $(PROTO_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^
$(CLIENT_SO): $(CLIENTLIB_OBJ) $(PROTO_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -shared -Wl,-soname,libjudgeq.so.0 -o $@ $^ $(PROTOC_LIBS)
	ln -sf libjudgeq.so.0 $(B)/lib/libjudgeq.so

$(JUDGEQ): $(CLI_MAIN) $(CLI_LIB) $(CLIENT_A) $(ENGINE_LIB) $(KERNEL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(PROTOC_LIBS)

$(B)/bin/judgeqd: $(DAEMON_MAIN) $(DAEMON_LIB) $(CLIENT_A) $(ENGINE_LIB) $(KERNEL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(DAEMON_LIBS)

$(B)/tests/%: $(B)/obj/tests/%.o $(TEST_HELPER_OBJ) $(CLI_LIB) $(DAEMON_LIB) $(CLIENT_A) $(ENGINE_LIB) $(KERNEL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(DAEMON_LIBS) $(TEST_LIBS)

# The sandbox test rebuilds judgeqd.service's seccomp filter.
$(B)/tests/test_daemon_security: TEST_LIBS += -lseccomp

# The suite runs every test binary twice: with the ISA the CPU offers and
# with JUDGEQ_ISA=scalar, so both kernel paths carry the whole engine.
check: all
	@JUDGEQ_BUILD=$(ROOT)/$(B) JUDGEQ_ROOT=$(ROOT) bash tests/run.sh $(TEST_BIN)

# `make test` is CI's command (tests/stages.sh): the suite, then the same
# suite under ASan + UBSan, the daemon tests under TSan, and
# CI_FUZZ_SECONDS of fuzzing per target, each stage counted in the last
# line. With SANITIZE set it is the suite in that build alone.
CI_FUZZ_SECONDS ?= 30
ifeq ($(SANITIZE),)
test:
	@CI_FUZZ_SECONDS=$(CI_FUZZ_SECONDS) MAKE="$(MAKE)" bash tests/stages.sh
else
test: check
endif

# The tests that start judgeqd (the daemon's threads, its workers and
# their completions are what ThreadSanitizer is for). Each runs once (the
# ISA does not change the threading); a sanitizer report from any process,
# the daemons included, is a failure (tests/run.sh reads the report files).
DAEMON_TEST_BIN := $(patsubst %,$(B)/tests/%,test_daemon_live test_daemon_e2e \
                     test_daemon_security test_client_lib)
test-daemon: all
	@JUDGEQ_BUILD=$(ROOT)/$(B) JUDGEQ_ROOT=$(ROOT) JUDGEQ_TEST_ISAS=native \
	  JUDGEQ_SANITIZER_LOGS=1 bash tests/run.sh $(DAEMON_TEST_BIN)

clean:
	rm -rf build

# ------------------------------------------------------- demo and models
#
#   make demo [DEMO_MODEL=F.gguf DEMO_SOFT=S.gguf] [DEMO_ARGS="--budget 32"]
#
# The README's first command: judgeqd with judgeq's own recall model and its
# Judge Q soft tokens answers one long needle-retrieval prompt through the
# client, evicting to a small budget (tools/demo.sh --help lists DEMO_ARGS).
#
#   make models [MODELS_WORK=build/models-work]
#
# Rebuilds models/judgeq-recall.gguf and models/judgeq-recall.soft.gguf from
# scratch (pretraining, the soft tokens' training split, `judgeq train`):
# about 25 minutes on two cores, resumable; tools/make_models.sh has the
# recipe that models/README.md records. Not part of `make test`.

DEMO_MODEL  ?= models/judgeq-recall.gguf
DEMO_SOFT   ?= models/judgeq-recall.soft.gguf
DEMO_ARGS   ?=
MODELS_WORK ?= build/models-work

.PHONY: demo demo-bins models
demo: deps
	@$(MAKE) --no-print-directory demo-bins
	@bash tools/demo.sh --judgeq $(JUDGEQ) --judgeqd $(B)/bin/judgeqd \
	  --model $(DEMO_MODEL) --soft $(DEMO_SOFT) $(DEMO_ARGS)

# (a recipe, so that make says nothing when they are up to date)
demo-bins: $(JUDGEQ) $(B)/bin/judgeqd
	@:

models: deps
	@$(MAKE) --no-print-directory $(JUDGEQ)
	bash tools/make_models.sh --judgeq $(JUDGEQ) --work $(MODELS_WORK) --out models

format:
	clang-format -i $(KERNEL_SRC) $(ENGINE_SRC) $(CLI_SRC) $(TEST_SRC) kernels/*.h engine/*.h client/*.h

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)

# ---------------------------------------------------------------- install
#
#   make install [PREFIX=/usr/local] [DESTDIR=...]
#
# Installs judgeq, judgeqd (when built), libjudgeq.so.0 (+ the .so link for
# linking), judgeq.h and judgeq_kv_layout.h, judgeq.pc, the systemd units,
# the sysusers.d/tmpfiles.d snippets and the man pages. The unit's
# ExecStart is rewritten to $(BINDIR)/judgeqd. systemd reads units,
# sysusers.d and tmpfiles.d under /usr/local/lib as well as /usr/lib, so
# both prefixes work; after installing to the live system run
# `systemd-sysusers && systemd-tmpfiles --create && systemctl daemon-reload`.

PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      ?= $(PREFIX)/bin
LIBDIR      ?= $(PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
MANDIR      ?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SYSTEMDDIR  ?= $(PREFIX)/lib/systemd/system
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
JQ_PC_VERSION := $(shell sed -n 's/^\#define JQ_VERSION "\(.*\)"/\1/p' client/cli.h)

# libjudgeq.so exports judgeq_* only (client/lib/libjudgeq.map says why).
$(CLIENT_SO): LDFLAGS += -Wl,--version-script=$(ROOT)/client/lib/libjudgeq.map

.PHONY: install
install: $(JUDGEQ) $(JUDGEQD) $(CLIENT_SO)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) \
	  $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(SYSTEMDDIR) $(DESTDIR)$(SYSUSERSDIR) \
	  $(DESTDIR)$(TMPFILESDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(JUDGEQ) $(DESTDIR)$(BINDIR)/judgeq
	$(if $(JUDGEQD),install -m 0755 $(JUDGEQD) $(DESTDIR)$(BINDIR)/judgeqd)
	install -m 0755 $(CLIENT_SO) $(DESTDIR)$(LIBDIR)/libjudgeq.so.0
	ln -sf libjudgeq.so.0 $(DESTDIR)$(LIBDIR)/libjudgeq.so
	install -m 0644 client/judgeq.h client/judgeq_kv_layout.h $(DESTDIR)$(INCLUDEDIR)/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' -e 's|@VERSION@|$(JQ_PC_VERSION)|' \
	    client/judgeq.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/judgeq.pc
	sed -e 's|/usr/local/bin/judgeqd|$(BINDIR)/judgeqd|' systemd/judgeqd.service \
	    > $(DESTDIR)$(SYSTEMDDIR)/judgeqd.service
	install -m 0644 systemd/judgeqd.socket $(DESTDIR)$(SYSTEMDDIR)/judgeqd.socket
	install -m 0644 systemd/judgeq.sysusers $(DESTDIR)$(SYSUSERSDIR)/judgeq.conf
	install -m 0644 systemd/judgeqd.tmpfiles $(DESTDIR)$(TMPFILESDIR)/judgeqd.conf
	install -m 0644 docs/judgeq.1 $(DESTDIR)$(MANDIR)/man1/judgeq.1
	install -m 0644 docs/judgeqd.8 $(DESTDIR)$(MANDIR)/man8/judgeqd.8
	chmod 0644 $(DESTDIR)$(PKGCONFIGDIR)/judgeq.pc $(DESTDIR)$(SYSTEMDDIR)/judgeqd.service

# Kernel benchmarks (bench/, not tests): decode GEMV GB/s and prefill GEMM
# GFLOP/s per weight type, and the machine's read bandwidth to compare them
# with. Built with the AVX-512 flags for this machine and run at once;
# BENCH_ARGS passes options to kernel_bench (e.g. BENCH_ARGS=--quick).
.PHONY: bench-kernels
bench-kernels: $(B)/bench/kernel_bench $(B)/bench/stream_read $(B)/bench/insn_throughput
	$(B)/bench/insn_throughput
	$(B)/bench/stream_read --threads 1
	$(B)/bench/stream_read --threads 2
	$(B)/bench/kernel_bench $(BENCH_ARGS)

$(B)/bench/kernel_bench: bench/kernel_bench.c $(KERNEL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512FLAGS) -o $@ $< $(KERNEL_LIB) $(LDFLAGS) $(LIBS)

$(B)/bench/stream_read $(B)/bench/insn_throughput: $(B)/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(AVX512FLAGS) -o $@ $< $(LDFLAGS)

# Pretraining throughput (tokens/s per sequence length) of the default
# `judgeq pretrain` model shape; PRETRAIN_BENCH_ARGS passes options.
.PHONY: bench-pretrain
bench-pretrain: $(B)/bench/pretrain_bench
	$(B)/bench/pretrain_bench $(PRETRAIN_BENCH_ARGS)

$(B)/bench/pretrain_bench: bench/pretrain_bench.c $(CLI_LIB) $(ENGINE_LIB) $(KERNEL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(CLI_LIB) $(ENGINE_LIB) $(KERNEL_LIB) $(LDFLAGS) $(LIBS)

# Which skills the pretraining trainer learns from scratch, on tiny
# synthetic tasks (bench/ar_probe.c; docs/EVAL.md quotes its runs);
# AR_PROBE_ARGS passes options.
.PHONY: ar-probe
ar-probe: $(B)/bench/ar_probe
	$(B)/bench/ar_probe $(AR_PROBE_ARGS)

$(B)/bench/ar_probe: bench/ar_probe.c $(CLI_LIB) $(ENGINE_LIB) $(KERNEL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(CLI_LIB) $(ENGINE_LIB) $(KERNEL_LIB) $(LDFLAGS) $(LIBS)

# ------------------------------------------------------------------ fuzzing
#
#   make fuzz [FUZZ_SECONDS=30]   build every libFuzzer target with clang
#                                 (ASan + UBSan), make seed corpora, run each
#                                 target FUZZ_SECONDS; fails on any crash;
#                                 ends with "N passed, N failed" (targets)
#   make fuzz FUZZ_NAMES=fuzz_gguf    only the targets named
#
# A target is tests/fuzz/fuzz_NAME.c defining jq_fuzz_NAME (tests/fuzz/fuzz.h);
# fuzz_main.c wraps one of them into LLVMFuzzerTestOneInput per binary. The
# engine, kernels, client and daemon libraries are built by this Makefile
# itself with B=build/fuzz/tree, CC=clang and the fuzzer's instrumentation.
# Seeds: the committed tests/fuzz/corpus/NAME/ and tests/fuzz/regress/NAME/,
# plus files made here in build/fuzz/seeds/NAME/ (gen-model, soft-init,
# vocabularies cut down from ../shared, which is never committed). Each
# target's growing corpus stays in build/fuzz/work/NAME/; crashing inputs
# land in build/fuzz/crashes/NAME/ — fix the bug and copy the input into
# tests/fuzz/regress/NAME/, which make test replays (test_fuzz_regress).

FUZZ_SECONDS ?= 30
FUZZ_CC      ?= clang
FUZZ_B       := build/fuzz
FUZZ_TREE    := $(FUZZ_B)/tree
FUZZ_SAN     := -fsanitize=address,undefined -fno-omit-frame-pointer \
                -fno-sanitize-recover=undefined
FUZZ_HELPER_SRC := tests/fuzz/fuzz_util.c
FUZZ_TARGET_SRC := $(filter-out tests/fuzz/fuzz_main.c $(FUZZ_HELPER_SRC),\
                     $(wildcard tests/fuzz/fuzz_*.c))
FUZZ_NAMES   := $(patsubst tests/fuzz/%.c,%,$(FUZZ_TARGET_SRC))
FUZZ_BINS    := $(patsubst %,$(FUZZ_B)/bin/%,$(FUZZ_NAMES))
FUZZ_LIBS    := $(FUZZ_TREE)/lib/libjudgeqd.a $(FUZZ_TREE)/lib/libjudgeq.a \
                $(FUZZ_TREE)/lib/libjudgeq-engine.a \
                $(FUZZ_TREE)/lib/libjudgeq-kernels.a
FUZZ_CFLAGS  := -std=c17 -O1 -g -Wall -Wextra -Werror -D_GNU_SOURCE -pthread \
                -I$(ROOT)/kernels -I$(ROOT)/engine -I$(ROOT)/client \
                -I$(ROOT)/daemon -I$(ROOT)/$(FUZZ_TREE)/gen -MMD -MP \
                $(FUZZ_SAN)
FUZZ_SEEDS_BIN := $(B)/bin/fuzz-seeds
# The longest input each target gets (default 4096): the GGUF seeds (tiny
# models) are up to ~32 KB; text needs far less, and every byte of it goes
# through seven vocabularies (~2 us per byte per vocabulary instrumented).
FUZZ_MAXLEN_fuzz_gguf := 65536
FUZZ_MAXLEN_fuzz_soft_tokens := 16384
FUZZ_MAXLEN_fuzz_tokenizer := 1024
# every usable JSONL line costs a few forward passes of stories260K
FUZZ_MAXLEN_fuzz_train_jsonl := 2048
rparen := )
FUZZ_REFERENCE ?= $(ROOT)/../shared/reference
FUZZ_MODELS    ?= $(ROOT)/../shared/models

# The regression replay in the normal build: the targets are plain objects
# here (no libFuzzer), linked ahead of the libraries they call.
FUZZ_TEST_OBJ := $(call obj,$(FUZZ_TARGET_SRC) $(FUZZ_HELPER_SRC))
$(FUZZ_TEST_OBJ): | $(PROTO_H)
$(B)/tests/test_fuzz_regress: $(B)/obj/tests/test_fuzz_regress.o \
    $(FUZZ_TEST_OBJ) $(TEST_HELPER_OBJ) $(CLI_LIB) $(DAEMON_LIB) $(CLIENT_A) \
    $(ENGINE_LIB) $(KERNEL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS) $(DAEMON_LIBS) $(TEST_LIBS)

$(FUZZ_SEEDS_BIN): $(B)/obj/tests/fuzz/seeds.o $(ENGINE_LIB) $(KERNEL_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS)

# Instrumented objects of the fuzz sources (fuzz_main.c once per target).
$(FUZZ_B)/obj/%.o: %.c | $(FUZZ_TREE)/gen/judgeq.pb-c.h
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c $< -o $@
# Static pattern rules: an open pattern here would also offer make a way to
# "remake" the included .d files (through its built-in %: %.o).
$(patsubst %,$(FUZZ_B)/obj/main_%.o,$(FUZZ_NAMES)): $(FUZZ_B)/obj/main_%.o: \
    tests/fuzz/fuzz_main.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link \
	  -DJQ_FUZZ_TARGET=$(patsubst fuzz_%,%,$*) -c $< -o $@
$(FUZZ_BINS): $(FUZZ_B)/bin/%: $(FUZZ_B)/obj/main_%.o $(FUZZ_B)/obj/tests/fuzz/%.o \
    $(FUZZ_B)/obj/tests/fuzz/fuzz_util.o $(FUZZ_LIBS)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) -pthread -o $@ $^ $(LIBS) \
	  $(DAEMON_LIBS)

.PHONY: fuzz fuzz-build fuzz-libs fuzz-seeds
# Steps run one after another (the libraries come from a sub-make, which
# would race with the links under -j if they were prerequisites).
fuzz:
	@$(MAKE) --no-print-directory fuzz-build
	@$(MAKE) --no-print-directory fuzz-seeds
	@failed=""; \
	for t in $(FUZZ_NAMES); do \
	  mkdir -p $(FUZZ_B)/work/$$t $(FUZZ_B)/crashes/$$t; \
	  dirs="$(FUZZ_B)/work/$$t"; \
	  for d in tests/fuzz/corpus/$$t tests/fuzz/regress/$$t $(FUZZ_B)/seeds/$$t; do \
	    [ -d $$d ] && dirs="$$dirs $$d"; \
	  done; \
	  case $$t in \
	    $(foreach n,$(FUZZ_NAMES),$(n)$(rparen) maxlen=$(or $(FUZZ_MAXLEN_$(n)),4096);;) \
	  esac; \
	  echo "fuzz: $$t for $(FUZZ_SECONDS) s (max_len $$maxlen)"; \
	  JUDGEQ_TEST_REFERENCE=$(FUZZ_REFERENCE) JUDGEQ_TEST_MODELS=$(FUZZ_MODELS) \
	  $(FUZZ_B)/bin/$$t -max_total_time=$(FUZZ_SECONDS) -max_len=$$maxlen \
	    -timeout=10 -print_final_stats=1 \
	    -artifact_prefix=$(FUZZ_B)/crashes/$$t/ $$dirs \
	    >$(FUZZ_B)/$$t.log 2>&1; rc=$$?; \
	  grep -E '^stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)' \
	    $(FUZZ_B)/$$t.log | sed "s/^/  $$t /"; \
	  if [ $$rc -ne 0 ]; then \
	    failed="$$failed $$t"; \
	    grep -E 'ERROR|SUMMARY|invariant|Test unit written' $(FUZZ_B)/$$t.log | sed 's/^/  | /'; \
	    echo "  $$t FAILED (exit $$rc): see $(FUZZ_B)/$$t.log"; \
	  fi; \
	done; \
	nf=$$(echo $$failed | wc -w); \
	if [ -n "$$failed" ]; then echo "fuzz: crashes in:$$failed"; \
	else echo "fuzz: no crashes in $(words $(FUZZ_NAMES)) targets"; fi; \
	echo "$$(( $(words $(FUZZ_NAMES)) - nf )) passed, $$nf failed"; \
	[ $$nf -eq 0 ]

fuzz-libs:
	@$(MAKE) --no-print-directory B=$(FUZZ_TREE) CC=$(FUZZ_CC) SANITIZE= \
	  SANFLAGS="$(FUZZ_SAN) -fsanitize=fuzzer-no-link" $(FUZZ_LIBS) \
	  $(FUZZ_TREE)/gen/judgeq.pb-c.h

fuzz-build: fuzz-libs
	@$(MAKE) --no-print-directory $(FUZZ_BINS)

# Seed files that cannot be committed (made from ../shared or too big).
fuzz-seeds: $(JUDGEQ) $(FUZZ_SEEDS_BIN)
	@set -e; s=$(FUZZ_B)/seeds; mkdir -p $$s/fuzz_gguf $$s/fuzz_soft_tokens \
	  $$s/fuzz_tokenizer; \
	j=$(JUDGEQ); tiny="--n-embd 8 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 8 --n-vocab 260 --ctx 32"; \
	$$j gen-model -o $$s/fuzz_gguf/tiny-llama-f32.gguf $$tiny >/dev/null; \
	$$j gen-model -o $$s/fuzz_gguf/tiny-llama-f16-ropefreqs.gguf $$tiny --type f16 --rope-freqs >/dev/null; \
	$$j gen-model -o $$s/fuzz_gguf/tiny-qwen2-bf16-linear.gguf $$tiny --type bf16 --arch qwen2 --rope-linear 2 >/dev/null; \
	$$j gen-model -o $$s/fuzz_gguf/tiny-llama-q8_0.gguf --n-embd 32 --n-layer 1 --n-head 2 --n-head-kv 1 --n-ff 32 --n-vocab 260 --ctx 32 --type q8_0 >/dev/null; \
	$$j soft-init -m $$s/fuzz_gguf/tiny-llama-f32.gguf -o $$s/fuzz_gguf/soft-tiny.gguf --n 2 >/dev/null; \
	$$j soft-init -m $(FUZZ_MODELS)/stories260K.gguf -o $$s/fuzz_soft_tokens/soft-1.gguf --n 1 >/dev/null; \
	$$j soft-init -m $(FUZZ_MODELS)/stories260K.gguf -o $$s/fuzz_soft_tokens/soft-3.gguf --n 3 --seed 7 >/dev/null; \
	$(FUZZ_SEEDS_BIN) $$s/fuzz_gguf $(wildcard $(FUZZ_REFERENCE)/tokenizers/*.gguf); \
	cp $(FUZZ_REFERENCE)/tokenizers/ggml-vocab-llama-spm.gguf.inp $$s/fuzz_tokenizer/reference.inp

-include $(shell find $(FUZZ_B)/obj -name '*.d' 2>/dev/null)
