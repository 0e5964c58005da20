// The event type's page (a file: the Content-Security-Policy allows no inline script).
// - The reconciliation section is shown only while "Profile" targeting is chosen (a new event type;
//   an existing one's targeting is fixed, and the page leaves the section out unless it is profile).
// - "Copy the command" copies the API preview's curl command.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
    const targeting = document.getElementById("id_targeting");
    const section = document.querySelector("fieldset.reconciliation");
    if (targeting && section) {
        const follow = () => { section.hidden = targeting.value !== "profile"; };
        targeting.addEventListener("change", follow);
        follow();
    }
    for (const button of document.querySelectorAll("button[data-copy]")) {
        button.addEventListener("click", async () => {
            const text = document.getElementById(button.dataset.copy).textContent;
            const label = button.textContent;
            try {
                await navigator.clipboard.writeText(text);
                button.textContent = "Copied";
            } catch (error) {
                // No clipboard (a page not served over HTTPS): select the text for Ctrl+C.
                const range = document.createRange();
                range.selectNodeContents(document.getElementById(button.dataset.copy));
                window.getSelection().removeAllRanges();
                window.getSelection().addRange(range);
                button.textContent = "Selected: press Ctrl+C";
            }
            setTimeout(() => { button.textContent = label; }, 2000);
        });
    }
});
