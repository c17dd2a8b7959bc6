"""Shared tables of pre-tokenization cases (text, expected pre-tokens)."""

SMALL_VOCAB = 4096  # vocabulary of the session tokenizer (conftest.py)

DIGITS = [
    # (text, expected pre-tokens)
    ("1234567", ["1", "234", "567"]),
    ("12345", ["12", "345"]),
    ("2026", ["2", "026"]),
    ("123", ["123"]),
    ("007", ["007"]),
    ("0001", ["0", "001"]),
    ("1000000", ["1", "000", "000"]),
    ("The price is 1234567!", ["The", " price", " is", " 1", "234", "567", "!"]),
    ("1,234,567", ["1", ",", "234", ",", "567"]),
    ("3.14159", ["3", ".", "14", "159"]),
    ("2026-11-23", ["2", "026", "-", "11", "-", "23"]),
    ("+1 (555) 123-4567", ["+", "1", " (", "555", ")", " 123", "-", "4", "567"]),
    ("x  1234", ["x", " ", " 1", "234"]),
    ("\t42", ["\t", "42"]),
    ("v1.2.3", ["v", "1", ".", "2", ".", "3"]),
    ("abc123def", ["abc", "123", "def"]),
    ("utf8_decode", ["utf", "8", "_decode"]),
    ("0x1F", ["0", "x", "1", "F"]),
    ("1e10", ["1", "e", "10"]),
    ("$9.99", ["$", "9", ".", "99"]),
    ("50%", ["50", "%"]),
    ("10:30:00", ["10", ":", "30", ":", "00"]),
    ("#12345678901", ["#", "12", "345", "678", "901"]),
    # Non-ASCII numerals: one character each, never grouped with ASCII digits.
    ("１２３", ["１", "２", "３"]),
    ("٣45", ["٣", "45"]),
    ("۱۴۰۲", ["۱", "۴", "۰", "۲"]),
    ("१२३", ["१", "२", "३"]),
    ("x²", ["x", "²"]),
    ("½", ["½"]),
]

SCRIPTS = [
    ("東京2024年", ["東京", "2", "024", "年"]),
    ("ภาษาไทยABC", ["ภาษาไทย", "ABC"]),
    ("한국어Korean", ["한국어", "Korean"]),
    ("Korean한국어", ["Korean", "한국어"]),
    # Han, Hiragana and Katakana are one script class (CJK): a Japanese word mixes them.
    ("東京に行きます", ["東京に行きます"]),
    ("コーヒーを飲む", ["コーヒーを飲む"]),
    ("東京タワーABC", ["東京タワー", "ABC"]),
    ("食べる한국어", ["食べる", "한국어"]),
    ("Москваmoscow", ["Москва", "moscow"]),
    ("ΑθήναAthens", ["Αθήνα", "Athens"]),
    ("עבריתHebrew", ["עברית", "Hebrew"]),
    ("العربيةArabic", ["العربية", "Arabic"]),
    ("हिन्दीHindi", ["हिन्दी", "Hindi"]),
    ("می\u200cخواهم", ["می\u200cخواهم"]),  # Persian ZWNJ stays inside the word
    ("Ελληνικά Русский עברית", ["Ελληνικά", " Русский", " עברית"]),
    ("café naïve", ["café", " naïve"]),
    ("e\u0301t\u00e9", ["e\u0301t\u00e9"]),  # combining accent stays in its word
    ("ՀայերենGeorgianქართული", ["Հայերեն", "Georgian", "ქართული"]),
    ("ᎣᏏᏲ", ["ᎣᏏᏲ"]),  # Cherokee, one run
    # Script Common/Inherited characters whose Script_Extensions tie them to one
    # script join its run; script-Han/kana marks are in their runs already.
    ("人々は〆切です", ["人々は〆切です"]),  # 々 Han; 〆 Common, scx Han
    ("ｺｰﾋﾞｰ", ["ｺｰﾋﾞｰ"]),  # halfwidth ｰ and voiced mark ﾞ (scx Hiragana+Katakana)
    ("いすゞ ミスヾ", ["いすゞ", " ミスヾ"]),  # ゞ Hiragana, ヾ Katakana iteration marks
    ("か゛", ["か゛"]),  # spacing voiced mark inside a kana word
    ("フランソワ・ミッテラン", ["フランソワ", "・ミッテラン"]),  # ・ is punctuation, leads a word
    ("東京、大阪。", ["東京", "、大阪", "。"]),
]

# The strict rule (kind `trinity_strict`): Han, Hiragana and Katakana apart.
STRICT_CJK = [
    ("東京に行きます", ["東京", "に", "行", "きます"]),
    ("コーヒーを飲む", ["コーヒー", "を", "飲", "む"]),
    ("東京タワー", ["東京", "タワー"]),
    ("人々は〆切です", ["人々", "は", "〆切", "です"]),
    ("ｺｰﾋﾞｰ", ["ｺｰﾋﾞｰ"]),
    ("東京2024年 한국", ["東京", "2", "024", "年", " 한국"]),
    ("フランソワ・ミッテラン", ["フランソワ", "・ミッテラン"]),
]

CODE_AND_SPACE = [
    ("I don't know", ["I", " don't", " know"]),
    ("they're HERE's", ["they're", " HERE's"]),
    ("it’s", ["it’s"]),
    ("getHTTPResponse", ["get", "HTTPResponse"]),
    ("camelCaseName", ["camel", "Case", "Name"]),
    ("self.append(x)", ["self", ".append", "(x", ")"]),
    ("    def f(x):\n        return x\n", ["   ", " def", " f", "(x", "):\n", "       ", " return", " x", "\n"]),
    ("a\n\n\nb", ["a", "\n\n\n", "b"]),
    ("a  \n b", ["a", "  \n", " b"]),
    ("x == y", ["x", " ==", " y"]),
    ("if (a) {\n", ["if", " (", "a", ")", " {\n"]),
    ("end   ", ["end", "   "]),
    ("\r\n", ["\r\n"]),
    ("😀👍🏽 ok", ["😀👍🏽", " ok"]),
    ("👨\u200d👩\u200d👧", ["👨\u200d👩\u200d👧"]),
]
