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

tools: $(BUILD)/mock_upstream

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
	rm -rf build build-asan

# libFuzzer targets (not part of the suite): make fuzz, then run build-fuzz/fuzz_jscan -max_total_time=60
# (fuzz_adapters: build-fuzz/fuzz_adapters tests/fuzz/corpus_adapters -max_total_time=60)
# (fuzz_anthropic_request: build-fuzz/fuzz_anthropic_request -max_total_time=60)
# (fuzz_responses_request: build-fuzz/fuzz_responses_request -max_total_time=60)
fuzz: $(WEB_GEN)
	@mkdir -p build-fuzz
	clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Isrc tests/fuzz/fuzz_jscan.c \
	  src/common/jscan.c -ljansson -o build-fuzz/fuzz_jscan
	clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Isrc tests/fuzz/fuzz_sse.c \
	  src/common/sse.c src/common/buf.c -o build-fuzz/fuzz_sse
	clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Isrc \
	  -I/usr/share/include/llhttp $(shell pkg-config --cflags $(PKGS)) -w tests/fuzz/fuzz_adapters.c \
	  $(LIB_SRC) $(WEB_GEN) $(LLHTTP_SRC) -o build-fuzz/fuzz_adapters $(shell pkg-config --libs $(PKGS)) -lpthread -lm
	clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Isrc \
	  -I/usr/share/include/llhttp $(shell pkg-config --cflags $(PKGS)) -w tests/fuzz/fuzz_anthropic_request.c \
	  $(LIB_SRC) $(WEB_GEN) $(LLHTTP_SRC) -o build-fuzz/fuzz_anthropic_request $(shell pkg-config --libs $(PKGS)) -lpthread -lm
	clang -g -O1 -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Isrc \
	  -I/usr/share/include/llhttp $(shell pkg-config --cflags $(PKGS)) -w tests/fuzz/fuzz_responses_request.c \
	  $(LIB_SRC) $(WEB_GEN) $(LLHTTP_SRC) -o build-fuzz/fuzz_responses_request $(shell pkg-config --libs $(PKGS)) -lpthread -lm
