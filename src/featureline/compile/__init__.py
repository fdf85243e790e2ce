"""The compiler's parts by concern; `compiler.Compiler` combines them."""
