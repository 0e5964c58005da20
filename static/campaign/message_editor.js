// The message editor (a file: the Content-Security-Policy allows no inline script).
// The event's fields beside the editor: a click inserts `{{ ctx.field }}` (or a collection's loop)
// at the cursor of the part last edited, the first part if none was.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
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
});
