# SPDX-License-Identifier: LGPL-2.1-or-later
# blktap: user space (libblktap, tapdisk, blktapctrl, tools), kernel module
# (via Kbuild), tests and benchmarks. `make help` lists the targets.

PREFIX	?= /usr/local
BINDIR	?= $(PREFIX)/bin
SBINDIR	?= $(PREFIX)/sbin
LIBDIR	?= $(PREFIX)/lib
INCDIR	?= $(PREFIX)/include
MANDIR	?= $(PREFIX)/share/man
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
VERSION	:= 0.1.0

CC	?= gcc
OPT	?= -O2 -g
CFLAGS	?= $(OPT)
WARN	:= -Wall -Wextra -Werror -std=gnu11
CPPFLAGS += -D_GNU_SOURCE -Ilibblktap/include -Itapdisk
LDLIBS	+= -laio -lz -lpthread
# blktapctrl's xenstore watcher uses libxenstore when it is installed (libxen-dev)
XS_CFLAGS := $(shell pkg-config --exists xenstore 2>/dev/null && echo "-DHAVE_XENSTORE $$(pkg-config --cflags xenstore)")
XS_LIBS	:= $(shell pkg-config --exists xenstore 2>/dev/null && pkg-config --libs xenstore)

ifeq ($(ASAN),1)
BUILD	?= build/asan
CFLAGS	+= -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS	+= -fsanitize=address,undefined
else
BUILD	?= build/release
endif

LIB_SRCS := $(wildcard libblktap/*.c)
TD_MAIN	 := tapdisk/tapdisk.c
TD_SRCS	 := $(filter-out $(TD_MAIN),$(wildcard tapdisk/*.c tapdisk/drivers/*.c))
CTRL_SRCS := $(wildcard blktapctrl/*.c)
TOOL_SRCS := $(wildcard tools/*.c)
UNIT_SRCS := $(wildcard tests/unit/test-*.c)
FUZZ_MAIN := tests/fuzz/replay.c
FUZZ_SRCS := $(filter-out $(FUZZ_MAIN),$(wildcard tests/fuzz/*.c))

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIBBLKTAP := $(BUILD)/libblktap.a
LIBTAPDISK := $(BUILD)/libtapdisk.a
TAPDISK	:= $(BUILD)/tapdisk
BLKTAPCTRL := $(if $(CTRL_SRCS),$(BUILD)/blktapctrl)
TOOLS	:= $(patsubst tools/%.c,$(BUILD)/%,$(TOOL_SRCS))
UNITS	:= $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRCS))
FUZZERS	:= $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz/%,$(FUZZ_SRCS))
PROGS	:= $(TAPDISK) $(BLKTAPCTRL) $(TOOLS)

.PHONY: all asan units fuzzers fuzz fuzz-libfuzzer deps check check-unit check-vm demo bench bench-vm \
	modules install clean help
.SECONDARY:

all: $(PROGS) $(LIBBLKTAP) $(BUILD)/libblktap.so

help:
	@echo "make            build user space ($(BUILD))"
	@echo "make asan       build with ASan+UBSan (build/asan)"
	@echo "make deps       install missing Debian packages"
	@echo "make check      all tests (installs deps first)"
	@echo "make demo       end-to-end demonstration"
	@echo "make bench      benchmarks against qemu-nbd, nbdkit, the bare file"
	@echo "make fuzz       fuzz every parser for longer (FUZZ_SECONDS each)"
	@echo "make modules    build blktap.ko (KDIR=...)"
	@echo "make install    DESTDIR=... PREFIX=..."

asan:
	$(MAKE) ASAN=1 all units fuzzers

units: $(UNITS)
fuzzers: $(FUZZERS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(WARN) $(CFLAGS) -fPIC -MMD -MP -c -o $@ $<

$(LIBBLKTAP): $(call obj,$(LIB_SRCS))
	$(AR) rcs $@ $^

$(BUILD)/libblktap.so: $(call obj,$(LIB_SRCS))
	$(CC) -shared -Wl,-soname,libblktap.so.0 $(LDFLAGS) -o $@ $^

$(LIBTAPDISK): $(call obj,$(TD_SRCS))
	$(AR) rcs $@ $^

$(TAPDISK): $(call obj,$(TD_MAIN)) $(LIBTAPDISK) $(LIBBLKTAP)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/blktapctrl/xs-real.o: CPPFLAGS += $(XS_CFLAGS)

$(BUILD)/blktapctrl: $(call obj,$(CTRL_SRCS)) $(LIBTAPDISK) $(LIBBLKTAP)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) $(XS_LIBS)

$(BUILD)/%: $(BUILD)/obj/tools/%.o $(LIBTAPDISK) $(LIBBLKTAP)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(LIBTAPDISK) $(LIBBLKTAP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# Fuzz harnesses: with gcc, a replay/mutation main (tests/fuzz/replay.c);
# `make fuzz-libfuzzer` builds real libFuzzer binaries with clang.
$(BUILD)/fuzz/%: $(BUILD)/obj/tests/fuzz/%.o $(call obj,$(FUZZ_MAIN)) $(LIBTAPDISK) $(LIBBLKTAP)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# Longer fuzzing than make check's: libFuzzer for a minute per harness with
# clang, else a million seeded mutations per harness with the replay main.
FUZZ_SECONDS ?= 60
fuzz:
	@if command -v clang >/dev/null 2>&1; then \
		$(MAKE) fuzz-libfuzzer && mkdir -p build/fuzz-corpus && \
		for f in $(FUZZ_SRCS); do n=$$(basename $$f .c); \
			[ -d tests/fuzz/corpus/$$n ] || continue; mkdir -p build/fuzz-corpus/$$n; \
			build/libfuzzer/fuzz/$$n -max_total_time=$(FUZZ_SECONDS) \
				build/fuzz-corpus/$$n tests/fuzz/corpus/$$n || exit 1; \
		done; \
	else \
		$(MAKE) asan && FUZZ_ITERATIONS=1000000 tests/run.sh fuzz; \
	fi

fuzz-libfuzzer:
	$(MAKE) BUILD=build/libfuzzer CC=clang \
		CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined" \
		LDFLAGS="-fsanitize=address,undefined" build/libfuzzer/libtapdisk.a build/libfuzzer/libblktap.a
	@mkdir -p build/libfuzzer/fuzz
	for f in $(FUZZ_SRCS); do \
		clang $(CPPFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined -o build/libfuzzer/fuzz/$$(basename $$f .c) \
			$$f build/libfuzzer/libtapdisk.a build/libfuzzer/libblktap.a $(LDLIBS) || exit 1; \
	done

deps:
	@scripts/deps.sh

# The tests: unit tests and integration tests use the ASan+UBSan build.
check: deps
	$(MAKE) all
	$(MAKE) asan
	tests/run.sh

check-unit: asan
	tests/run.sh unit

demo: deps all
	scripts/demo.sh $(BUILD)

bench: deps all
	tests/bench/run.sh $(BUILD)
	tests/bench/qcow.sh $(BUILD)
	tests/bench/image.sh vmdk $(BUILD)

KDIR ?= $(lastword $(sort $(wildcard /usr/src/linux-headers-6.1.*-amd64)))
modules:
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

# The kernel tests boot Debian's kernel in QEMU (TCG) with the module.
check-vm: deps
	tests/vm/run.sh

bench-vm: deps
	BENCH=1 tests/vm/run.sh

# The .pc file is made here, so it always names the PREFIX installed to.
install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBDIR) \
		$(DESTDIR)$(INCDIR)/blktap $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(PROGS) $(DESTDIR)$(SBINDIR)/
	install -m 0644 $(LIBBLKTAP) $(DESTDIR)$(LIBDIR)/
	install -m 0755 $(BUILD)/libblktap.so $(DESTDIR)$(LIBDIR)/libblktap.so.0
	ln -sf libblktap.so.0 $(DESTDIR)$(LIBDIR)/libblktap.so
	install -m 0644 libblktap/include/blktap/*.h $(DESTDIR)$(INCDIR)/blktap/
	sed -e 's|@PREFIX@|$(PREFIX)|; s|@LIBDIR@|$(LIBDIR)|; s|@INCDIR@|$(INCDIR)|; s|@VERSION@|$(VERSION)|' \
		libblktap/libblktap.pc.in > $(DESTDIR)$(PKGCONFIGDIR)/libblktap.pc
	install -m 0644 doc/*.8 $(DESTDIR)$(MANDIR)/man8/
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' blktapctrl/blktapctrl.service \
		> $(DESTDIR)$(SYSTEMDUNITDIR)/blktapctrl.service

clean:
	rm -rf build
	rm -f kernel/*.o kernel/*.ko kernel/*.mod* kernel/.*.cmd .*.cmd *.mod* Module.symvers modules.order
	rm -f blktap.o blktap.ko kernel/tests/*.o kernel/tests/.*.cmd

-include $(shell find build -path '*/obj/*' -name '*.d' 2>/dev/null)
