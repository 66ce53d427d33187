// The tokenizer tests check the reader's parts (Unicode normalization, the Oniguruma translation) directly.
[assembly: System.Runtime.CompilerServices.InternalsVisibleTo("Mora.Notebooks.Tests")]
