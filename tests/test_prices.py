"""Deal arithmetic and formatting, the user's price lists and their commands, plugin price
sources (the example plugin in docs/examples/price_plugin), and ``scan --price`` end to end."""

from __future__ import annotations

import csv
import io
import json
import sys
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
from typer.testing import CliRunner

import tagteller
from tagteller import plugins, prices
from tagteller.cli import build_app
from tagteller.prices import PriceBook, PriceError, PriceRange, compare, deal_for, parse_amount
from tests.builders import solid_image, register_thrift_domains

REPO = Path(__file__).resolve().parent.parent
EXAMPLE_PLUGIN = REPO / "docs" / "examples" / "price_plugin"


@pytest.fixture
def domains(tmp_path):
    return register_thrift_domains(tmp_path)


def run(*args: str):
    return CliRunner().invoke(build_app(), [str(a) for a in args])


# -- arithmetic and formatting ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("low", "high", "currency", "paid", "text"),
    [
        # the example: midpoint 75, (75 - 12.50) / 75 = 83.3%
        ("60", "90", "EUR", "12.50", "typical 60-90 EUR, you pay 12.50: about 83% below"),
        # 20.5% exactly: rounded half-up (half-even would say 20)
        ("40", "60", "EUR", "39.75", "typical 40-60 EUR, you pay 39.75: about 21% below"),
        ("60", "90", "EUR", "120", "typical 60-90 EUR, you pay 120: about 60% above"),
        ("60", "90", "USD", "75", "typical 60-90 USD, you pay 75: within the typical range"),
        ("60", "90", "EUR", "60", "typical 60-90 EUR, you pay 60: within the typical range"),
        ("60", "90", "EUR", "90.00", "typical 60-90 EUR, you pay 90: within the typical range"),
        ("60", "60", "EUR", "59.99", "typical 60 EUR, you pay 59.99: less than 1% below"),
        ("60", "60", "EUR", "60.25", "typical 60 EUR, you pay 60.25: less than 1% above"),
        ("60", "60", "EUR", "60.4", "typical 60 EUR, you pay 60.40: about 1% above"),
        # JPY has no minor unit: 1199.5 shows as 1200; (1750 - 1199.5) / 1750 = 31.46%
        ("1500", "2000", "jpy", "1199.5", "typical 1500-2000 JPY, you pay 1200: about 31% below"),
        # KWD has three decimals; 14.5% exactly (binary floats compute 14.4999... and round to 14)
        ("0.2", "0.2", "KWD", "0.171", "typical 0.200 KWD, you pay 0.171: about 15% below"),
        ("19.999", "30", "GBP", "10", "typical 20-30 GBP, you pay 10: about 60% below"),
    ],
)
def test_deal_text(low, high, currency, paid, text):
    assert compare(paid, PriceRange(low, high, currency)).text == text


def test_deal_fields_are_exact_decimals():
    deal = compare("12.5", PriceRange("60", "90", "EUR", source="your price list"))
    assert deal.position == "below" and deal.percent == 83
    assert deal.paid == Decimal("12.5") and isinstance(deal.typical.low, Decimal)
    assert deal.record() == {
        "price_paid": "12.50", "typical_low": "60.00", "typical_high": "90.00", "currency": "EUR",
        "deal": "typical 60-90 EUR, you pay 12.50: about 83% below", "price_source": "your price list",
    }
    assert tuple(deal.record()) == prices.DEAL_FIELDS
    assert compare(75, PriceRange(60, 90)).position == "within"
    assert compare(Decimal("90.01"), PriceRange(60, 90)).position == "above"
    assert compare(12.5, PriceRange(60, 90)).paid == Decimal("12.5")  # a float goes through its text form


@pytest.mark.parametrize("bad", ["0", "0.00", "-5", "-0.01", "abc", "", "  ", "nan", "NaN", "inf", "-Infinity",
                                 "12,50", "1,000", True, None, "1e20", [12]])
def test_bad_amounts_are_refused(bad):
    with pytest.raises(PriceError):
        parse_amount(bad)


def test_bad_ranges_are_refused():
    with pytest.raises(PriceError, match="more than high"):
        PriceRange("90", "60")
    with pytest.raises(PriceError, match="more than 0"):
        PriceRange("0", "60")
    with pytest.raises(PriceError, match="more than 0"):
        PriceRange("-10", "60")
    for currency in ("EURO", "€", "E1R", "", "US"):
        with pytest.raises(PriceError, match="three-letter"):
            PriceRange("1", "2", currency)
    with pytest.raises(PriceError, match="one line"):
        PriceRange("1", "2", note="two\nlines")
    assert PriceRange("1", "2", " usd ").currency == "USD"
    with pytest.raises(PriceError, match="more than 0"):
        compare("0", PriceRange("1", "2"))


# -- the price list commands -----------------------------------------------------------------

def test_set_list_remove(domains):
    result = run("prices", "set", "--domain", "thrift-colours", "red", "60", "90", "--currency", "eur",
                 "--note", "seen at three shops")
    assert result.exit_code == 0, result.output
    assert "red: typical 60-90 EUR" in result.stdout
    path = prices.price_list_path("thrift-colours")
    rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
    assert rows == [{"label": "red", "low": "60", "high": "90", "currency": "EUR", "note": "seen at three shops"}]

    result = run("prices", "set", "-d", "thrift-colours", "red", "50", "80.5", "-c", "USD")
    assert result.exit_code == 0 and "(was 60-90 EUR)" in result.stdout
    assert run("prices", "set", "-d", "thrift-colours", "blue", "5", "10").exit_code == 0

    listed = json.loads(run("prices", "list", "--domain", "thrift-colours", "--json").stdout)
    [one] = listed["lists"]
    assert one["domain"] == "thrift-colours" and one["problems"] == []
    assert [(r["label"], r["low"], r["high"], r["currency"]) for r in one["prices"]] == [
        ("blue", "5.00", "10.00", "EUR"), ("red", "50.00", "80.50", "USD")]
    text = run("prices", "list").stdout
    assert "thrift-colours" in text and "red" in text and "50-80.50 USD" in text

    assert deal_for("thrift-colours", "red", "20").text == "typical 50-80.50 USD, you pay 20: about 69% below"

    result = run("prices", "remove", "--domain", "thrift-colours", "red")
    assert result.exit_code == 0 and "removed red" in result.stdout
    assert deal_for("thrift-colours", "red", "20") is None
    result = run("prices", "remove", "--domain", "thrift-colours", "red")
    assert result.exit_code == 1 and "no price for 'red'" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("thrift-colours", "red", "90", "60"), "more than high"),
        (("thrift-colours", "red", "0", "60"), "more than 0"),
        (("thrift-colours", "red", "ten", "60"), "not a number"),
        (("thrift-colours", "red", "10", "60", "--currency", "euro"), "three-letter"),
        (("thrift-fixed", "horse", "10", "60"), "not a label of domain 'thrift-fixed'"),
        (("thrift-colours", "../red", "10", "60"), "path separator"),
        (("no-such-domain", "red", "10", "60"), "unknown domain"),
    ],
)
def test_set_refuses_bad_input(domains, args, message):
    domain, *rest = args
    result = run("prices", "set", "--domain", domain, *rest)
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert not prices.price_list_path("thrift-colours").exists()


def test_new_labels_get_prices_only_where_the_domain_allows_them(domains):
    assert run("prices", "set", "-d", "thrift-colours", "purple", "1", "2").exit_code == 0
    assert run("prices", "set", "-d", "thrift-fixed", "cat", "1", "2").exit_code == 0
    assert run("prices", "set", "-d", "thrift-fixed", "horse", "1", "2").exit_code == 2


def test_import_reports_each_bad_row_and_keeps_the_good_ones(domains, tmp_path):
    assert run("prices", "set", "-d", "thrift-fixed", "dog", "1", "2").exit_code == 0
    source = tmp_path / "mine.csv"
    source.write_text(
        "\ufeffLabel,Low,High,Currency,Note,Extra column\n"  # spreadsheet BOM, capitalised header
        "cat,10,20,,from my notebook,x\n"                    # line 2: good, default currency
        "dog,30,45.5,GBP,,\n"                                # line 3: good, replaces dog
        "cat,11,12,EUR,,\n"                                  # line 4: duplicate
        "horse,1,2,EUR,,\n"                                  # line 5: not a label of the domain
        "../dog,1,2,EUR,,\n"                                 # line 6: path-like
        "dog,abc,2,EUR,,\n"                                  # line 7: not a number
        ",,,,,\n"                                            # line 8: blank row, ignored
        "cat,9,3,EUR,,\n"                                    # line 9: low > high
        "dog,-1,3,EUR,,\n"                                   # line 10: negative
        "cat,5,,EUR,,\n"                                     # line 11: high empty
        "dog,,,EUR,,\n",                                     # line 12: no prices: skipped, not an error
        encoding="utf-8",
    )
    result = run("prices", "import", "--domain", "thrift-fixed", source, "--currency", "sek")
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    where = f"{source}:"
    expected = {4: "already appears on line 2", 5: "not a label of domain", 6: "path separator",
                7: "not a number", 9: "more than high", 10: "more than 0", 11: "high is empty"}
    assert len(errors) == len(expected)
    for (line, reason), error in zip(sorted(expected.items()), errors, strict=True):
        assert error.startswith(f"error: {where}{line}: ") and reason in error, error
    assert "imported 2 price(s)" in result.stdout and "(1 new, 1 replaced)" in result.stdout
    assert "1 row(s) without prices skipped" in result.stdout and "7 bad row(s) skipped" in result.stdout
    book = prices.PriceBook("thrift-fixed")
    assert book.lookup("cat") == PriceRange("10", "20", "SEK", source=prices.USER_SOURCE, note="from my notebook")
    assert book.lookup("dog") == PriceRange("30", "45.5", "GBP", source=prices.USER_SOURCE)


def test_import_of_an_unusable_file(domains, tmp_path):
    result = run("prices", "import", "-d", "thrift-fixed", tmp_path / "missing.csv")
    assert result.exit_code == 1 and "missing.csv: no such file" in result.stderr
    bad = tmp_path / "bad.csv"
    bad.write_text("name,price\ncat,3\n", encoding="utf-8")
    result = run("prices", "import", "-d", "thrift-fixed", bad)
    assert result.exit_code == 1 and "lacks column(s) label, low, high" in result.stderr
    latin = tmp_path / "latin.csv"
    latin.write_bytes("label,low,high,currency,note\ncat,1,2,EUR,caf\xe9\n".encode("latin-1"))
    result = run("prices", "import", "-d", "thrift-fixed", latin)
    assert result.exit_code == 1 and "not UTF-8" in result.stderr
    assert not prices.price_list_path("thrift-fixed").exists()


def test_template_labels_its_example_and_imports_nothing_unfilled(domains, tmp_path):
    result = run("prices", "template", "--domain", "thrift-fixed")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    example = [line for line in lines if "EXAMPLE" in line]
    assert example and all(line.startswith("#") for line in example) and "made-up" in example[0]
    data = [line for line in lines if not line.startswith("#")]
    assert data == ["label,low,high,currency,note", "cat,,,EUR,", "dog,,,EUR,"]
    template = tmp_path / "template.csv"
    template.write_text(result.stdout, encoding="utf-8")
    result = run("prices", "import", "-d", "thrift-fixed", template)
    assert result.exit_code == 0 and "imported 0 price(s)" in result.stdout
    assert not prices.price_list_path("thrift-fixed").exists()
    # filled in, the same file imports; its leading comments are kept in the stored list
    template.write_text(template.read_text(encoding="utf-8").replace("cat,,,EUR,", "cat,3,8,EUR,"), encoding="utf-8")
    assert run("prices", "import", "-d", "thrift-fixed", template).exit_code == 0
    assert PriceBook("thrift-fixed").lookup("cat") == PriceRange("3", "8", "EUR", source=prices.USER_SOURCE)
    assert run("prices", "set", "-d", "thrift-fixed", "dog", "4", "9").exit_code == 0
    assert prices.price_list_path("thrift-fixed").read_text(encoding="utf-8").count("# EXAMPLE ONLY") == 0
    generic = run("prices", "template").stdout.splitlines()  # no domain: header only, example in a comment
    assert [line for line in generic if not line.startswith("#")] == ["label,low,high,currency,note"]


def test_a_hand_edited_list_with_a_bad_row(domains):
    path = prices.price_list_path("thrift-colours")
    path.parent.mkdir(parents=True)
    path.write_text("# my thrift prices\nlabel,low,high,currency,note\nred,5,9,EUR,\ngreen,lots,9,EUR,\n",
                    encoding="utf-8")
    assert PriceBook("thrift-colours").lookup("red") == PriceRange("5", "9", "EUR", source=prices.USER_SOURCE)
    assert PriceBook("thrift-colours").lookup("green") is None
    result = run("prices", "list", "-d", "thrift-colours")
    assert result.exit_code == 0 and f"warning: {path}:4: low 'lots' is not a number" in result.stderr
    result = run("prices", "set", "-d", "thrift-colours", "blue", "1", "2")
    assert result.exit_code == 2 and f"{path}:4" in result.stderr
    assert "green,lots" in path.read_text(encoding="utf-8")  # the bad row was not silently dropped
    path.write_text(path.read_text(encoding="utf-8").replace("green,lots,9,EUR,\n", ""), encoding="utf-8")
    assert run("prices", "set", "-d", "thrift-colours", "blue", "1", "2").exit_code == 0
    assert path.read_text(encoding="utf-8").startswith("# my thrift prices\nlabel,low,high,currency,note\n")


# -- plugin price sources ---------------------------------------------------------------------

def _install_example_plugin(monkeypatch, tmp_path):
    """Make the example plugin importable and discoverable as an installed distribution."""
    project = tomllib.loads((EXAMPLE_PLUGIN / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    entry_points = project["entry-points"]["tagteller"]
    site = tmp_path / "site"
    dist = site / "tagteller_example_prices-0.1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {project['name']}\nVersion: {project['version']}\n",
                                   encoding="utf-8")
    (dist / "entry_points.txt").write_text(
        "[tagteller]\n" + "".join(f"{name} = {target}\n" for name, target in entry_points.items()), encoding="utf-8")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.syspath_prepend(str(EXAMPLE_PLUGIN))
    monkeypatch.delitem(sys.modules, "tagteller_example_prices", raising=False)
    plugins.reset()


def test_example_plugin_source_and_the_user_list_overriding_it(monkeypatch, tmp_path):
    _install_example_plugin(monkeypatch, tmp_path)
    assert "example-prices" in plugins.price_sources()
    rows = {row["name"]: row for row in plugins.plugin_table()}
    assert rows["example-prices"]["hooks"] == ["register_price_sources"]
    assert rows["example-prices"]["package"] == "tagteller-example-prices"

    found = PriceBook("clothing-tags").lookup("adidas")
    assert found == PriceRange("10", "20", "EUR", source="example-prices (made-up example values)",
                               note="example value, not a real price")
    assert PriceBook("clothing-tags").lookup("puma") is None
    result = run("prices", "lookup", "--domain", "clothing-tags", "adidas", "--price", "4")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == ["typical 10-20 EUR, you pay 4: about 73% below",
                                          "source: example-prices (made-up example values)"]
    # the plugin's nike range is in USD: asking in EUR finds nothing, in USD finds it
    assert PriceBook("clothing-tags").lookup("nike", currency="EUR") is None
    assert PriceBook("clothing-tags").lookup("nike", currency="usd").currency == "USD"

    assert run("prices", "set", "-d", "clothing-tags", "adidas", "25", "40").exit_code == 0
    mine = PriceBook("clothing-tags").lookup("adidas")
    assert (mine.low, mine.high, mine.source) == (Decimal(25), Decimal(40), prices.USER_SOURCE)
    assert deal_for("clothing-tags", "adidas", "4").text == "typical 25-40 EUR, you pay 4: about 88% below"
    # the user's range is in EUR; asked for USD the plugin's answer is used only if it has one in USD
    assert PriceBook("clothing-tags").lookup("adidas", currency="USD") is None
    listed = json.loads(run("prices", "list", "--json").stdout)
    assert listed["plugin_sources"] == ["example-prices"]


class Sources:
    """Three sources: one that raises, one that returns the wrong type, one that answers."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @tagteller.hookimpl
    def register_price_sources(self, register):
        def broken(domain, label):
            self.calls.append("broken")
            raise RuntimeError("price server down")

        def wrong_type(domain, label):
            self.calls.append("wrong")
            return (1, 2, "EUR")

        def good(domain, label):
            self.calls.append("good")
            return PriceRange("7", "9", "EUR") if label == "red" else None

        register("broken", broken)
        register("wrong", wrong_type)
        register("good", good)


def test_failing_sources_are_reported_once_and_skipped(domains, capsys):
    sources = Sources()
    plugins.register_plugin(sources, name="test-sources")
    book = prices.PriceBook("thrift-colours")
    assert book.lookup("red") == PriceRange("7", "9", "EUR", source="good")
    assert book.lookup("green") is None
    assert book.lookup("red") is not None  # cached
    assert sources.calls == ["broken", "wrong", "good", "good"]
    err = capsys.readouterr().err
    assert err.count("price source broken") == 1 and "RuntimeError: price server down" in err
    assert err.count("price source wrong") == 1 and "returned tuple, expected tagteller.prices.PriceRange" in err


# -- scan --price end to end -----------------------------------------------------------------

def test_scan_with_price(domains, tmp_path):
    red = solid_image(tmp_path / "red.png", (250, 10, 10))
    green = solid_image(tmp_path / "green.png", (10, 250, 10))
    grey = solid_image(tmp_path / "grey.png", (128, 128, 128))
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    assert run("prices", "set", "-d", "thrift-colours", "red", "60", "90").exit_code == 0

    result = run("scan", "--domain", "thrift-colours", red, green, grey, broken, "--price", "12.50", "-f", "jsonl")
    assert result.exit_code == 1
    records = [json.loads(line) for line in result.stdout.splitlines()]
    by_file = {Path(r["file"]).name: r for r in records}
    assert by_file["red.png"]["label"] == "red" and by_file["red.png"]["sure"] is True
    assert {k: by_file["red.png"][k] for k in prices.DEAL_FIELDS} == {
        "price_paid": "12.50", "typical_low": "60.00", "typical_high": "90.00", "currency": "EUR",
        "deal": "typical 60-90 EUR, you pay 12.50: about 83% below", "price_source": "your price list"}
    assert by_file["green.png"]["label"] == "green"
    assert by_file["green.png"]["deal"] == "no typical price for green"
    assert by_file["green.png"]["typical_low"] is None and by_file["green.png"]["price_paid"] == "12.50"
    # a grey image is a coin toss: the deal is given for the top label, marked as a guess
    assert by_file["grey.png"]["sure"] is False
    assert by_file["grey.png"]["deal"].startswith(f"if it is {by_file['grey.png']['label']}: ")
    assert by_file["broken.jpg"]["status"] == "error" and by_file["broken.jpg"]["deal"] is None
    assert "hint: no typical price for green" in result.stderr
    assert "broken.jpg" in result.stderr and "1 of 4 input(s) failed" in result.stderr

    result = run("scan", "-d", "thrift-colours", red, grey, "--price", "100", "-f", "csv")
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert list(rows[0])[-6:] == list(prices.DEAL_FIELDS)
    assert rows[0]["deal"] == "typical 60-90 EUR, you pay 100: about 33% above"
    assert rows[0]["typical_high"] == "90.00" and rows[0]["currency"] == "EUR"

    result = run("scan", "-d", "thrift-colours", red, grey, "--price", "75")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split()[-1] == "deal"
    assert "typical 60-90 EUR, you pay 75: within the typical range" in lines[1]
    assert "not sure: 33%" in lines[2]

    result = run("scan", "-d", "thrift-colours", red, "--price", "75", "--currency", "USD", "-f", "json")
    assert json.loads(result.stdout)[0]["deal"] == "no typical price for red in USD"


def test_scan_without_price_has_no_deal_fields(domains, tmp_path):
    red = solid_image(tmp_path / "red.png", (250, 10, 10))
    grey = solid_image(tmp_path / "grey.png", (128, 128, 128))
    result = run("scan", "-d", "thrift-colours", red, grey, "-f", "json")
    assert result.exit_code == 0
    assert all("deal" not in r for r in json.loads(result.stdout))
    table = run("scan", "-d", "thrift-colours", red, grey).stdout.splitlines()
    assert "deal" not in table[0]
    assert "100%" in table[1] and "not sure" not in table[1]
    assert "not sure: 33%" in table[2]


@pytest.mark.parametrize(("price", "message"), [("0", "more than 0"), ("-3", "more than 0"),
                                                 ("cheap", "not a number"), ("12,50", "decimal point")])
def test_scan_refuses_a_bad_price_before_scanning(domains, tmp_path, price, message):
    red = solid_image(tmp_path / "red.png", (250, 10, 10))
    result = run("scan", "-d", "thrift-colours", red, f"--price={price}")
    assert result.exit_code == 2 and message in result.stderr
    assert result.stdout == ""
    result = run("scan", "-d", "thrift-colours", red, "--currency", "EUR")
    assert result.exit_code == 2 and "--currency goes with --price" in result.stderr
