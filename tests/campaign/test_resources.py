"""Custom resources: `import_resource` (all or nothing, bounded) and their read-only admin pages."""

from __future__ import annotations

import io

import pytest

from campaign import resources
from campaign.models import CustomResource, CustomResourceRow
from campaign.resources import ResourceFileError, import_resource_csv
from tests.cli import assert_bad_input
from tests.factories import OrganizationFactory

CATALOGUE = "sku,title,image\nSKU-1,Leather jacket,https://img.example/1.png\nSKU-2,Helmet,https://img.example/2.png\n"


def load(organization, text: str, *, name: str = "product", key: str = "sku") -> CustomResource:
    return import_resource_csv(organization=organization, name=name, key=key, handle=io.StringIO(text))


def rows(resource: CustomResource) -> dict[str, dict]:
    return {row.key: row.data for row in resource.rows.all()}


@pytest.mark.django_db
def test_an_import_stores_the_rows_by_key_and_a_new_import_replaces_them(organization):
    resource = load(organization, CATALOGUE)
    assert (resource.key_column, resource.columns, resource.row_count) == (
        "sku",
        ["sku", "title", "image"],
        2,
    )
    assert rows(resource)["SKU-1"] == {
        "sku": "SKU-1",
        "title": "Leather jacket",
        "image": "https://img.example/1.png",
    }
    again = load(organization, "sku,title\nSKU-3,Gloves\n")
    assert again.pk == resource.pk and rows(again) == {"SKU-3": {"sku": "SKU-3", "title": "Gloves"}}


@pytest.mark.django_db
def test_resources_of_two_organizations_do_not_mix(organization, other_organization):
    load(organization, CATALOGUE)
    load(other_organization, "sku,title\nSKU-1,Anvil\n")
    assert CustomResourceRow.objects.get(resource__organization=other_organization).data["title"] == "Anvil"
    assert CustomResource.objects.get(organization=organization).row_count == 2


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("text", "key", "said"),
    [
        ("", "sku", "the file is empty"),
        ("title,price\nJacket,3\n", "sku", "--key: the header has no column 'sku'"),
        ("sku,title\nSKU-1,Jacket\nSKU-1,Helmet\n", "sku", "line 3: sku: the key 'SKU-1' is there twice"),
        ("sku,title\nSKU-1,Jacket\n,Helmet\n", "sku", "line 3: sku: the key is empty"),
        ("sku,title\nSKU-1,Jacket,extra\n", "sku", "line 2: 3 values for 2 columns"),
        ("sku,ti tle\nSKU-1,Jacket\n", "sku", "line 1: 'ti tle' is not a column name"),
        ("sku,title,title\nSKU-1,a,b\n", "sku", "line 1: the column 'title' is there twice"),
        ("sku,title\nSKU-1,Jack\x00et\n", "sku", "line 2: title:"),
        ("sku,title\n" + "K" * 256 + ",Jacket\n", "sku", "line 2: sku: a key has at most 255 characters"),
    ],
)
def test_a_bad_file_names_its_line_and_column_and_imports_nothing(organization, text, key, said):
    load(organization, CATALOGUE)
    with pytest.raises(ResourceFileError, match=None) as error:
        load(organization, text, key=key)
    assert said in str(error.value)
    assert rows(CustomResource.objects.get()).keys() == {"SKU-1", "SKU-2"}  # the previous import stands


@pytest.mark.django_db
def test_bounds_of_size_rows_and_columns(organization, monkeypatch):
    monkeypatch.setattr(resources, "MAX_BYTES", 100)
    with pytest.raises(ResourceFileError, match="larger than"):
        load(organization, "sku,title\n" + "SKU-1,Jacket\n" * 10)
    monkeypatch.setattr(resources, "MAX_BYTES", 10_000)
    monkeypatch.setattr(resources, "MAX_ROWS", 3)
    load(organization, "sku\nA\nB\nC\n")
    with pytest.raises(ResourceFileError, match="line 5: more than 3 rows"):
        load(organization, "sku\nA\nB\nC\nD\n")
    monkeypatch.setattr(resources, "MAX_COLUMNS", 2)
    with pytest.raises(ResourceFileError, match="line 1: 3 columns; at most 2"):
        load(organization, "sku,a,b\nA,1,2\n")
    with pytest.raises(ResourceFileError, match="NAME: '1product' is not a resource name"):
        load(organization, "sku\nA\n", name="1product")


def test_import_resource_command_prints_one_line_or_exits_2_with_one(cli, tmp_path):
    good = tmp_path / "catalogue.csv"
    good.write_text(CATALOGUE, encoding="utf-8")
    duplicate = tmp_path / "duplicate.csv"
    duplicate.write_text("sku,title\nA,1\nA,2\n", encoding="utf-8")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes("sku,title\nA,Zoë\n".encode("latin-1"))
    done = cli.run("import_resource", "geometrixx", "product", str(good), "--key", "sku")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "product: 2 row(s) imported, by sku."
    results = cli.run_all(
        [
            ["import_resource", "geometrixx", "product", str(duplicate), "--key", "sku"],
            ["import_resource", "geometrixx", "product", str(latin1), "--key", "sku"],
            ["import_resource", "geometrixx", "product", str(tmp_path / "missing.csv"), "--key", "sku"],
            ["import_resource", "nobody", "product", str(good), "--key", "sku"],
            ["import_resource", "geometrixx", "product", str(good)],
        ]
    )
    for result in results:
        assert_bad_input(result)
    assert "line 3: sku: the key 'A' is there twice (nothing was imported)" in results[0].stderr
    assert "not UTF-8" in results[1].stderr
    assert "Cannot read" in results[2].stderr
    assert "No organization 'nobody'" in results[3].stderr
    assert "--key" in results[4].stderr
    assert cli.rows("SELECT key FROM campaign_customresourcerow ORDER BY key") == [("SKU-1",), ("SKU-2",)]


@pytest.mark.django_db
def test_administrators_see_their_organizations_resources_and_rows_read_only(
    client, administrator, organization
):
    load(organization, CATALOGUE)
    load(OrganizationFactory(slug="acme"), "sku,title\nANVIL-1,Anvil\n", name="anvils")
    client.force_login(administrator)
    listing = client.get("/admin/campaign/customresource/")
    assert listing.status_code == 200
    assert b"product" in listing.content and b"anvils" not in listing.content
    rows_page = client.get("/admin/campaign/customresourcerow/")
    assert b"SKU-1" in rows_page.content and b"ANVIL-1" not in rows_page.content
    assert client.get("/admin/campaign/customresource/add/").status_code == 403
