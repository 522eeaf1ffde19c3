# ModelSwitch build. `make` builds build/modelswitch; `make test` runs the whole suite;
# `make asan` builds an ASan/UBSan variant in build-asan/; `make bench` runs the benchmarks.
CC      ?= cc
BUILD   ?= build
PKGS    := libuv libcurl jansson yaml-0.1 sqlite3 libssl libcrypto hiredis libpq
OPT     ?= -O2 -g
CFLAGS  := $(OPT) -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Wshadow -Wno-unused-parameter \
           -Isrc -I/usr/share/include/llhttp $(shell pkg-config --cflags $(PKGS))
LDLIBS  := $(SANLD) $(shell pkg-config --libs $(PKGS)) -lpthread -lm
LLHTTP_SRC := /usr/share/llhttp/llhttp.c /usr/share/llhttp/api.c /usr/share/llhttp/http.c

SRC     := $(shell find src -name '*.c' | sort)
LIB_SRC := $(filter-out src/main.c,$(SRC))
# The dashboard's files (web/), compiled into the binary by scripts/web_embed.c (the directories
# are prerequisites too, so a removed file regenerates the source).
WEB_FILES := $(shell find web -type f | sort)
WEB_GEN := $(BUILD)/gen/web_assets.c
OBJ     := $(LIB_SRC:%.c=$(BUILD)/%.o) $(WEB_GEN:%.c=%.o)
LLOBJ   := $(patsubst /usr/share/llhttp/%.c,$(BUILD)/llhttp/%.o,$(LLHTTP_SRC))
UNIT_SRC := $(sort $(wildcard tests/unit/test_*.c))
UNIT_BIN := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)

.PHONY: all test asan clean format bench tools fuzz unit screenshots
all: $(BUILD)/modelswitch tools

tools: $(BUILD)/mock_upstream $(BUILD)/bench/scale $(BUILD)/bench/ledger

$(BUILD)/modelswitch: $(BUILD)/src/main.o $(BUILD)/libms.a
	$(CC) $(CFLAGS) -o $@ $^ $(LDFLAGS) $(LDLIBS)

$(BUILD)/libms.a: $(OBJ) $(LLOBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/src/%.o: src/%.c $(shell find src -name '*.h')
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

# A build tool, so built without the sanitizers of an asan build.
$(BUILD)/web_embed: scripts/web_embed.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -std=c11 -Wall -Wextra -Werror $(shell pkg-config --cflags libcrypto) -o $@ $< \
	  $(shell pkg-config --libs libcrypto)

$(WEB_GEN): $(BUILD)/web_embed $(WEB_FILES) $(shell find web -type d)
	@mkdir -p $(dir $@)
	$(BUILD)/web_embed $@ web $(WEB_FILES:web/%=%)

$(BUILD)/gen/%.o: $(BUILD)/gen/%.c src/api/dashboard.h
	$(CC) $(CFLAGS) -c -o $@ $<

# llhttp is Node's parser, compiled from Debian's sources; it is not our code, so our warning
# policy does not apply to it.
$(BUILD)/llhttp/%.o: /usr/share/llhttp/%.c
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Werror -Wshadow,$(CFLAGS)) -w -c -o $@ $<

$(BUILD)/tests/%: tests/unit/%.c tests/unit/tap.h tests/unit/testdb.h $(BUILD)/libms.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -Itests/unit -o $@ $< $(BUILD)/libms.a $(LDFLAGS) $(LDLIBS)

# The shared parts' scaling benchmark (make bench, phase scale).
$(BUILD)/bench/scale: bench/scale.c $(BUILD)/libms.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libms.a $(LDFLAGS) $(LDLIBS)

# The ledger writer against the number of accounts (make bench, phase ledger).
$(BUILD)/bench/ledger: bench/ledger.c $(BUILD)/libms.a
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(BUILD)/libms.a $(LDFLAGS) $(LDLIBS)

$(BUILD)/mock_upstream: tests/mock/mock_upstream.c $(LLOBJ)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -o $@ $< $(LLOBJ) $(LDFLAGS) $(LDLIBS)

unit: $(UNIT_BIN)

test:
	bash tests/run.sh

asan:
	$(MAKE) BUILD=build-asan CC=clang \
	  OPT="-O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  SANLD="-fsanitize=address,undefined" all unit

bench:
	bash bench/run.sh

# The dashboard's screenshots in docs/dashboard/, taken by its browser test (Chromium).
screenshots: all
	MS_SCREENSHOTS=docs/dashboard node --test tests/e2e/dashboard.test.mjs

format:
	clang-format -i $$(find src tests/unit tests/mock -name '*.[ch]')

clean:
	rm -rf build build-asan build-fuzz

# libFuzzer targets (tests/README.md, tests/fuzz/; the suite's stage 6 runs each briefly, tests/fuzz.sh): `make fuzz`, then run each
# a while, with its seeds when it has some, e.g.
#   build-fuzz/fuzz_jscan -max_total_time=60        (fuzz_sse, fuzz_anthropic_request,
#                                                    fuzz_responses_request alike)
#   build-fuzz/fuzz_adapters tests/fuzz/corpus_adapters -max_total_time=60
#   build-fuzz/fuzz_journal /tmp/cj tests/fuzz/corpus_journal -max_total_time=120
#   build-fuzz/fuzz_import /tmp/ci tests/fuzz/corpus_import -max_total_time=120
#   build-fuzz/fuzz_redis_url /tmp/cu tests/fuzz/corpus_redis_url -max_total_time=120
#   build-fuzz/fuzz_usage_block /tmp/cb tests/fuzz/corpus_usage_block -max_total_time=120
#   build-fuzz/fuzz_h1parse /tmp/ch tests/fuzz/corpus_h1parse -max_total_time=120
#   build-fuzz/fuzz_h1req /tmp/chr tests/fuzz/corpus_h1req -max_total_time=240
# (libFuzzer adds what it finds to the first directory: a scratch one, made beforehand, keeps the
# seeds as committed)
# The targets that need more than a file or two link build-fuzz/libms.a: the sources compiled
# once with the sanitizers and the fuzzer's coverage (fuzzer-no-link: the fuzzer's main is in
# each target).
FUZZ_CC   := clang -g -O1 -std=c11 -D_GNU_SOURCE -Isrc -I/usr/share/include/llhttp \
             $(shell pkg-config --cflags $(PKGS)) -w
FUZZ_SAN  := -fsanitize=address,undefined
FUZZ_OBJ  := $(LIB_SRC:%.c=build-fuzz/%.o) $(LLHTTP_SRC:/usr/share/llhttp/%.c=build-fuzz/llhttp/%.o) \
             build-fuzz/gen/web_assets.o
FUZZ_LIBS := $(shell pkg-config --libs $(PKGS)) -lpthread -lm
FUZZ_BIG  := fuzz_adapters fuzz_anthropic_request fuzz_responses_request fuzz_journal fuzz_import \
             fuzz_redis_url fuzz_usage_block

fuzz: build-fuzz/fuzz_jscan build-fuzz/fuzz_sse build-fuzz/fuzz_h1parse build-fuzz/fuzz_h1req \
      $(FUZZ_BIG:%=build-fuzz/%) build-fuzz/journal_seeds

build-fuzz/fuzz_jscan: tests/fuzz/fuzz_jscan.c src/common/jscan.c src/common/jtree.c
	@mkdir -p build-fuzz
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) $^ -ljansson -o $@
build-fuzz/fuzz_sse: tests/fuzz/fuzz_sse.c src/common/sse.c src/common/buf.c src/common/util.c
	@mkdir -p build-fuzz
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) $^ -o $@
# the upstream response parser against llhttp (tests/unit/h1p_diff.h)
build-fuzz/fuzz_h1parse: tests/fuzz/fuzz_h1parse.c tests/fuzz/h1_cuts.h tests/unit/h1p_diff.h src/common/h1parse.c src/common/buf.c src/common/util.c \
                         $(LLHTTP_SRC)
	@mkdir -p build-fuzz
	$(FUZZ_CC) -Itests/unit -fsanitize=fuzzer $(FUZZ_SAN) $(filter %.c,$^) -o $@
# the server's request parser against llhttp (tests/unit/h1p_reqdiff.h)
build-fuzz/fuzz_h1req: tests/fuzz/fuzz_h1req.c tests/fuzz/h1_cuts.h tests/unit/h1p_reqdiff.h src/common/h1parse.c src/common/buf.c src/common/util.c \
                       $(LLHTTP_SRC)
	@mkdir -p build-fuzz
	$(FUZZ_CC) -Itests/unit -fsanitize=fuzzer $(FUZZ_SAN) $(filter %.c,$^) -o $@
build-fuzz/src/%.o: src/%.c $(shell find src -name '*.h')
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@
build-fuzz/llhttp/%.o: /usr/share/llhttp/%.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) -fsanitize=fuzzer-no-link $(FUZZ_SAN) -c $< -o $@
build-fuzz/gen/web_assets.o: $(WEB_GEN)
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_SAN) -c $< -o $@
build-fuzz/libms.a: $(FUZZ_OBJ)
	rm -f $@ && ar rcs $@ $^
build-fuzz/fuzz_%: tests/fuzz/fuzz_%.c build-fuzz/libms.a
	$(FUZZ_CC) -fsanitize=fuzzer $(FUZZ_SAN) $< build-fuzz/libms.a $(FUZZ_LIBS) -o $@
# writes fuzz_journal's seeds (no fuzzer main: an ordinary program on the same objects)
build-fuzz/journal_seeds: tests/fuzz/journal_seeds.c build-fuzz/libms.a
	$(FUZZ_CC) $(FUZZ_SAN) $< build-fuzz/libms.a $(FUZZ_LIBS) -o $@
