// The message editor (a file: the Content-Security-Policy allows no inline script).
// - The event's fields beside the editor: a click inserts `{{ ctx.field }}` (or a collection's loop)
//   at the cursor of the part last edited (a language variant's too), the first part if none was.
// - The language variants edited per language (a fieldset each), written back to the variants'
//   JSON field, which stays what the form posts and the server checks.
// - The preview follows the unsaved edits: 400 ms after typing stops, the parts, variants and sample
//   data go to the live preview view (the product's bounded renderer); HTML is shown in a sandboxed
//   frame, every other part as text; at a desktop or mobile width, in the language chosen.
"use strict";

const DEBOUNCE_MS = 400;

function insertEventFields() {
    const panel = document.getElementById("event-fields");
    if (!panel) {
        return;
    }
    const parts = panel.dataset.targets.split(" ")
        .map((name) => document.getElementById(`id_${name}`))
        .filter((element) => element !== null);
    let last = parts[0] || null;
    for (const part of parts) {
        part.addEventListener("focus", () => { last = part; });
    }
    // A language variant's parts too (their fieldsets are made later, and added and removed).
    document.addEventListener("focusin", (event) => {
        if (event.target.matches?.("#variant-editor [data-part]")) {
            last = event.target;
        }
    });
    for (const button of panel.querySelectorAll("button[data-insert]")) {
        button.addEventListener("click", () => {
            if (last === null) {
                return;
            }
            const start = last.selectionStart ?? last.value.length;
            const end = last.selectionEnd ?? start;
            last.setRangeText(button.dataset.insert, start, end, "end");
            last.focus();
            last.dispatchEvent(new Event("input", { bubbles: true }));
        });
    }
}

function element(tag, properties = {}, children = []) {
    const made = document.createElement(tag);
    for (const [key, value] of Object.entries(properties)) {
        if (key === "dataset") {
            Object.assign(made.dataset, value);
        } else if (key in made) {
            made[key] = value;
        } else {
            made.setAttribute(key, value);
        }
    }
    for (const child of children) {
        made.append(child);
    }
    return made;
}

// --- Variants, per language ------------------------------------------------------------------

// [[key, value]] of a JSON object's members in their order, a key given twice kept twice (the
// server refuses it by name; JSON.parse would keep only the last, and the editor lose the other).
function members(text) {
    const object = JSON.parse(text); // SyntaxError: not JSON
    if (object === null || typeof object !== "object" || Array.isArray(object)) {
        throw new TypeError("not a JSON object");
    }
    const found = [];
    let depth = 0;
    let inString = false;
    let escaped = false;
    let stringStart = -1;
    let key = null;
    let valueStart = -1;
    for (let i = 0; i < text.length; i++) {
        const c = text[i];
        if (inString) {
            if (escaped) {
                escaped = false;
            } else if (c === "\\") {
                escaped = true;
            } else if (c === '"') {
                inString = false;
                if (depth === 1 && valueStart === -1) {
                    key = JSON.parse(text.slice(stringStart, i + 1));
                }
            }
        } else if (c === '"') {
            inString = true;
            stringStart = i;
        } else if (c === ":" && depth === 1) {
            valueStart = i + 1;
        } else if ((c === "," && depth === 1) || ((c === "}" || c === "]") && depth === 1)) {
            if (valueStart !== -1) {
                found.push([key, JSON.parse(text.slice(valueStart, i))]);
            }
            valueStart = -1;
            depth -= c === "," ? 0 : 1;
        } else if (c === "{" || c === "[") {
            depth += 1;
        } else if (c === "}" || c === "]") {
            depth -= 1;
        }
    }
    return found;
}

function variantsEditor() {
    const field = document.getElementById("id_variants");
    if (!field || !field.dataset.parts) {
        return;
    }
    let variants;
    try {
        variants = field.value.trim() ? members(field.value) : [];
    } catch {
        return; // not a JSON object (as posted before the page was sent back): left as text
    }
    const parts = JSON.parse(field.dataset.parts);
    const editor = element("div", { id: "variant-editor", className: "variant-editor" });
    const list = element("div", { className: "variant-languages" });
    let count = 0;

    // The JSON of the fieldsets, as written: a language given twice is kept twice, for the server
    // to refuse by name (JSON.stringify of an object would silently keep one).
    function write() {
        const entries = [];
        for (const fieldset of list.querySelectorAll("fieldset.variant-language")) {
            const code = fieldset.querySelector(".variant-code").value.trim();
            const chosen = {};
            for (const input of fieldset.querySelectorAll("[data-part]")) {
                if (input.value !== "") {
                    chosen[input.dataset.part] = input.value;
                }
            }
            entries.push(`${JSON.stringify(code)}: ${JSON.stringify(chosen)}`);
            fieldset.querySelector("legend").textContent = code ? `Language ${code}` : "New language";
        }
        field.value = entries.length ? `{${entries.join(", ")}}` : "{}";
        field.dispatchEvent(new Event("input", { bubbles: true }));
    }

    function addLanguage(code, content) {
        const index = count++;
        const fieldset = element("fieldset", { className: "variant-language module", dataset: { index } });
        fieldset.append(element("legend", { textContent: code ? `Language ${code}` : "New language" }));
        const codeId = `variant-${index}-language`;
        fieldset.append(element("div", { className: "variant-row" }, [
            element("label", { htmlFor: codeId, textContent: "Language code" }),
            element("input", {
                type: "text", id: codeId, className: "variant-code", value: code, maxLength: 35,
                placeholder: "fr, pt-BR, zh-Hant",
            }),
        ]));
        for (const part of parts) {
            const id = `variant-${index}-${part.name}`;
            const input = part.multiline
                ? element("textarea", { id, rows: part.name === "html" ? 8 : 3, cols: 90 })
                : element("input", { type: "text", id, className: "vLargeTextField" });
            if (part.maxlength) {
                input.maxLength = part.maxlength;
            }
            input.dataset.part = part.name;
            input.value = typeof content[part.name] === "string" ? content[part.name] : "";
            input.placeholder = "Empty: the default content's";
            fieldset.append(element("div", { className: "variant-row" }, [
                element("label", { htmlFor: id, textContent: part.label }),
                input,
            ]));
        }
        const remove = element("button", {
            type: "button", className: "remove-variant", textContent: "Remove this language",
        });
        remove.addEventListener("click", () => {
            fieldset.remove();
            write();
        });
        fieldset.append(remove);
        list.append(fieldset);
        return fieldset;
    }

    for (const [code, content] of variants) {
        addLanguage(code, content && typeof content === "object" ? content : {});
    }
    const add = element("button", { type: "button", id: "add-variant", textContent: "Add a language" });
    add.addEventListener("click", () => {
        addLanguage("", {}).querySelector(".variant-code").focus();
        write();
    });
    list.addEventListener("input", write);
    editor.append(list, add);
    // The server's errors name the language (`variants.fr.subject: ...`): its fieldset is marked.
    const errors = field.closest(".form-row")?.querySelector(".errorlist")?.textContent || "";
    for (const fieldset of list.querySelectorAll("fieldset.variant-language")) {
        const code = fieldset.querySelector(".variant-code").value.trim();
        if (errors.includes(`variants.${code}.`) || errors.includes(`variants.${code}:`)
                || errors.includes(`language ${code} `)) {
            fieldset.classList.add("variant-has-error");
        }
    }
    field.hidden = true;
    field.after(editor);
}

// --- The live preview ------------------------------------------------------------------------

function livePreview() {
    const panel = document.getElementById("live-preview");
    if (!panel) {
        return;
    }
    const output = document.getElementById("preview-output");
    const errors = document.getElementById("preview-errors");
    const status = document.getElementById("preview-status");
    const used = document.getElementById("preview-variant-used");
    const language = document.getElementById("preview-language");
    const sample = document.getElementById("preview-ctx");
    const variantsField = document.getElementById("id_variants");

    for (const button of panel.querySelectorAll("button.preview-width")) {
        button.addEventListener("click", () => {
            output.dataset.width = button.dataset.width;
            for (const other of panel.querySelectorAll("button.preview-width")) {
                other.setAttribute("aria-pressed", String(other === button));
            }
        });
    }

    const parts = panel.dataset.parts.split(" ").map((pair) => {
        const [name, column] = pair.split(":");
        return { name, input: document.getElementById(`id_${column}`) };
    }).filter((part) => part.input !== null);
    if (parts.length === 0) {
        panel.querySelector("label[for=preview-language]")?.remove();
        language.remove(); // read-only: the saved draft only
        return;
    }
    const token = document.querySelector("input[name=csrfmiddlewaretoken]")?.value || "";
    let timer = null;
    let sent = 0;

    function variants() {
        const text = variantsField ? variantsField.value.trim() : "";
        if (!text) {
            return {};
        }
        return JSON.parse(text); // SyntaxError: said in the panel
    }

    function showLanguages(found) {
        const chosen = language.value;
        for (const option of [...language.options].slice(2)) {
            option.remove();
        }
        for (const code of Object.keys(found).filter((code) => code).sort()) {
            language.append(element("option", { value: code, textContent: code }));
        }
        language.value = [...language.options].some((option) => option.value === chosen) ? chosen : "auto";
    }

    function showErrors(list) {
        errors.replaceChildren(...list.map((error) => element("li", {
            textContent: `${error.field || "message"}${error.line ? `, line ${error.line}` : ""}: ${error.message}`,
        })));
        errors.hidden = list.length === 0;
    }

    function smsText(value, sms) {
        const ucs2 = new Set(sms.forcingUcs2);
        const extension = new Set(sms.extension);
        const mirror = element("div", { id: "preview-sms", className: "preview-sms" });
        for (const character of value) {
            if (ucs2.has(character)) {
                mirror.append(element("mark", { className: "sms-ucs2", textContent: character,
                    title: "Not in GSM-7: the message is sent as UCS-2 (70 characters a segment)" }));
            } else if (extension.has(character)) {
                mirror.append(element("mark", { className: "sms-extension", textContent: character,
                    title: "GSM-7 extension: counts as two characters" }));
            } else {
                mirror.append(character);
            }
        }
        const plural = sms.segments === 1 ? "" : "s";
        const figures = [
            mirror,
            element("p", { id: "preview-sms-length", textContent:
                `${sms.characters} characters, ${sms.encoding}, ${sms.segments} segment${plural} `
                + `(${sms.perSegment} characters per segment)` }),
        ];
        if (sms.forcingUcs2.length) {
            figures.push(element("p", { id: "preview-sms-ucs2" }, [
                "These characters force UCS-2 (70 characters a segment instead of 160): ",
                ...sms.forcingUcs2.flatMap((c) => [element("mark", { className: "sms-ucs2", textContent: c }), " "]),
            ]));
        }
        if (sms.extension.length) {
            figures.push(element("p", { id: "preview-sms-extension" }, [
                "These characters count as two: ",
                ...sms.extension.flatMap((c) => [element("mark", { className: "sms-extension", textContent: c }), " "]),
            ]));
        }
        return figures;
    }

    function show(answer) {
        const shown = [];
        if (answer.sender) {
            shown.push(element("div", { className: "preview-part preview-sender" }, [
                element("strong", { textContent: "From:" }), " ",
                element("span", { className: "preview-value", textContent: answer.sender }),
            ]));
        }
        for (const part of answer.parts) {
            if (part.html) {
                // No script runs in it: sandbox without allow-scripts, and the page's policy.
                shown.push(element("iframe", {
                    className: "preview-html", title: `${part.label} preview`, sandbox: "", srcdoc: part.value,
                }));
            } else if (answer.sms && part.name === "text") {
                shown.push(...smsText(part.value, answer.sms));
            } else {
                shown.push(element("div", { className: `preview-part preview-part-${part.name}` }, [
                    element("strong", { textContent: `${part.label}:` }), " ",
                    element("span", { className: "preview-value", textContent: part.value }),
                ]));
            }
        }
        output.replaceChildren(...shown);
        used.textContent = answer.variantUsed;
    }

    async function render() {
        const number = ++sent;
        panel.dataset.state = "rendering";
        let found;
        try {
            found = variants();
        } catch (error) {
            showErrors([{ field: "variants", message: `not valid JSON (${error.message})` }]);
            status.textContent = "Not rendered";
            panel.dataset.state = "idle";
            return;
        }
        showLanguages(found);
        const content = Object.fromEntries(parts.map((part) => [part.name, part.input.value]));
        const fromName = document.getElementById("id_from_name");
        const fromAddress = document.getElementById("id_from_address");
        if (fromName && fromAddress) {
            content.from = { name: fromName.value, address: fromAddress.value };
        }
        if (Object.keys(found).length) {
            content.variants = found;
        }
        status.textContent = "Rendering…";
        let response;
        try {
            response = await fetch(panel.dataset.url, {
                method: "POST",
                credentials: "same-origin",
                headers: { "Content-Type": "application/json", "X-CSRFToken": token },
                body: JSON.stringify({
                    content,
                    ctx: sample.value,
                    language: language.value === "auto" ? null : language.value,
                }),
            });
        } catch {
            if (number === sent) {
                status.textContent = "The server could not be reached";
                panel.dataset.state = "idle";
            }
            return;
        }
        const answer = await response.json().catch(() => ({
            errors: [{ field: "", message: `the server answered ${response.status}` }],
        }));
        if (number !== sent) {
            return; // a later edit's answer is on its way
        }
        if (response.ok) {
            showErrors([]);
            show(answer);
            status.textContent = "Unsaved edits shown";
        } else {
            showErrors(answer.errors || []);
            status.textContent = "Not rendered: the last preview stays";
        }
        panel.dataset.rendered = String(number);
        panel.dataset.state = "idle";
    }

    function later() {
        clearTimeout(timer);
        panel.dataset.state = "edited";
        status.textContent = "Edited…";
        timer = setTimeout(render, DEBOUNCE_MS);
    }

    for (const part of parts) {
        part.input.addEventListener("input", later);
    }
    for (const id of ["id_from_name", "id_from_address"]) {
        document.getElementById(id)?.addEventListener("input", later);
    }
    variantsField?.addEventListener("input", later);
    sample.addEventListener("input", later);
    language.addEventListener("change", render);
    // Nothing is asked on load: the page shows the saved draft's render already (a render replacing
    // it would move the page under the marketer's first click).
}

document.addEventListener("DOMContentLoaded", () => {
    insertEventFields();
    variantsEditor();
    livePreview();
});
