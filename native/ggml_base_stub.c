/* Link-time stand-in for llama-cpp-python's libggml-base.so.0 (never installed, never loaded).
 * Linking against it records DT_NEEDED libggml-base.so.0 in libasrgguf_native.so, so the build needs
 * only ggml's headers (from the llama-cpp-python sdist), not an installed llama_cpp. At run time the
 * backend is loaded after llama.cpp, and the dynamic linker resolves these names to the copy of
 * libggml-base.so.0 that is already loaded (same soname), the one llama.cpp itself uses. */
void ggml_are_same_shape(void) {}
void ggml_backend_buffer_init(void) {}
void ggml_backend_buft_is_host(void) {}
void ggml_fp16_to_fp32(void) {}
void ggml_fp32_to_fp16(void) {}
void ggml_graph_n_nodes(void) {}
void ggml_graph_node(void) {}
void ggml_is_contiguous(void) {}
void ggml_nbytes(void) {}
void ggml_op_desc(void) {}
