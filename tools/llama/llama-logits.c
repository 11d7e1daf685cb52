// Reference logits from llama.cpp, for tools/compare-gemma3.py: tokenizes a
// prompt the way llama.cpp does (BOS added when the model asks for it, special
// tokens parsed), evaluates every position in one batch, prints the token ids
// on one line and writes positions × vocabulary f32 logits to OUT.
//
//   cc -O2 -I$LLAMA_CPP/include -I$LLAMA_CPP/ggml/include tools/llama/llama-logits.c \
//      -L$LLAMA_CPP/build/bin -lllama -Wl,-rpath,$LLAMA_CPP/build/bin -o llama-logits
//   ./llama-logits MODEL.gguf "prompt" OUT.f32 [threads]
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: %s MODEL PROMPT OUT [threads]\n", argv[0]); return 2; }
    int threads = argc > 4 ? atoi(argv[4]) : 2;
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);
    llama_token toks[4096];
    int n = llama_tokenize(vocab, argv[2], (int)strlen(argv[2]), toks, 4096, 1, 1);
    if (n <= 0) { fprintf(stderr, "tokenize failed\n"); return 1; }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n < 512 ? 512 : n + 16;
    cp.n_batch = cp.n_ctx; cp.n_ubatch = cp.n_ctx;
    cp.n_threads = threads; cp.n_threads_batch = threads;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int i = 0; i < n; i++) {
        b.token[i] = toks[i]; b.pos[i] = i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1;
    }
    b.n_tokens = n;
    if (llama_decode(ctx, b) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
    FILE *f = fopen(argv[3], "wb");
    for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), (size_t)n_vocab, f);
    fclose(f);
    for (int i = 0; i < n; i++) printf(i ? " %d" : "%d", toks[i]);
    printf("\n");
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
